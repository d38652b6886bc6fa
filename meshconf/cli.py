"""`meshconf <job> ...` (or `python -m meshconf <job> ...`, `torchrun ... -m meshconf extract ...`): one entry point.

Each job module provides `add_arguments(parser)` and `run(args) -> int`. User errors (`MeshconfError`) are printed
as one line and exit with status 2; missing model files as one line each, with status 1; nothing a user can cause
ends in a traceback. Exit status: 0 done, 1 model files missing (or, for `demo`, an input failed), 2 bad arguments
or input files, 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .errors import MeshconfError

JOBS = {
    "demo": ("meshconf.jobs.demo", "confidence-painted meshes and a report for every person in images, folders or videos"),
    "annotate": ("meshconf.jobs.annotate", "a dataset as published (3DPW, 3DOH50K, Human3.6M) -> the annotation file extract reads"),
    "extract": ("meshconf.jobs.extract", "ED, SE and OpenPose confidence arrays for an annotated dataset (plain or occluded)"),
    "sensitivity": ("meshconf.jobs.sensitivity",
                    "occlusion sensitivity of SPIN and OpenPose (a sliding occluder on a crop, or each joint over a "
                    "dataset)"),
    "qualitative": ("meshconf.jobs.qualitative", "predicted against ground-truth confidence for one dataset image"),
    "doctor": ("meshconf.jobs.doctor", "list the model files that are present or missing, and how to get each"),
    "fetch": ("meshconf.jobs.fetch", "download the publicly available model files"),
    "check-precision": ("meshconf.jobs.check_precision",
                        "float32 against bfloat16 on your images and weights: keypoints, ED, estimator decisions"),
    "convert-smpl": ("meshconf.jobs.convert_smpl", "convert an official SMPL .pkl into a pickle-free .npz"),
    "convert-classifier": ("meshconf.jobs.convert_classifier",
                           "the original's trained classifier.pt + classifier_wj.pt -> a meshconf estimator file"),
    "prepare": ("meshconf.jobs.prepare", "prepare classifier tables (filters, labels, seeded splits) from ED arrays"),
    "train": ("meshconf.jobs.train", "train the error estimators on prepared tables"),
    "evaluate": ("meshconf.jobs.evaluate", "evaluate error estimators on ED arrays (paper-style table, JSON, plots)"),
    "calibrate": ("meshconf.jobs.calibrate",
                  "refit an estimator's bounds, P(accurate) and operating points on your own labelled arrays"),
}


def _os_error(exc: OSError) -> str:
    """One line for an operating-system refusal, naming the path and what to do."""
    import errno

    where = " -> ".join(str(f) for f in (exc.filename, exc.filename2) if f is not None) or "a file"
    advice = {errno.EEXIST: "a file of that name is in the way; give another path",
              errno.ENOTDIR: "part of the path is a file, not a folder; give another path",
              errno.EISDIR: "a folder is in the way where a file should go; give another path",
              errno.ENOENT: "a folder on the way does not exist or cannot be created there",
              errno.EACCES: "no permission; give a path you can write",
              errno.EPERM: "not permitted; give a path you can write",
              errno.EROFS: "read-only file system; give a path you can write",
              errno.ENOSPC: "the disk is full; free space and run the same command again (finished work is kept)"}
    return f"{where}: {exc.strerror or exc} ({advice.get(exc.errno, 'check the path and the disk')})"


def _call(job: str, module, args) -> int:
    from .runtime import keep_freed_memory

    keep_freed_memory()
    try:
        return int(module.run(args) or 0)
    except MeshconfError as exc:
        for line in str(exc).splitlines() or [""]:
            print(f"meshconf {job}: error: {line}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except OSError as exc:  # a path that is a file, not a folder, not writable, a full disk: the path and the cause
        print(f"meshconf {job}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"meshconf {job}: interrupted (finished work was kept; run again to resume)", file=sys.stderr)
        return 130


def run_job(job: str, argv=None) -> int:
    """`meshconf <job> <argv...>` from Python (tests, notebooks): the same parsing, checks and exit status."""
    module_name, help_text = JOBS[job]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"meshconf {job}", description=help_text)
    module.add_arguments(parser)
    return _call(job, module, parser.parse_args(argv))


def main(argv=None) -> int:
    from .runtime import passive_openmp

    passive_openmp()  # before any job module imports torch
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = argparse.ArgumentParser(prog="meshconf", description="meshconf: where is a single-image human mesh wrong?")
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    sub = parser.add_subparsers(dest="job", metavar="<job>")
    modules = {}
    # Only the chosen job's module is imported: start-up stays fast and one broken extra cannot block the rest.
    chosen = next((a for a in argv if not a.startswith("-")), None)
    for job, (module_name, help_text) in JOBS.items():
        p = sub.add_parser(job, help=help_text, description=help_text)
        if job == chosen:
            modules[job] = importlib.import_module(module_name)
            modules[job].add_arguments(p)
    args = parser.parse_args(argv)
    if args.version:
        from . import __version__
        print(f"meshconf {__version__}")
        return 0
    if args.job is None:
        parser.print_help()
        return 0
    return _call(args.job, modules[args.job], args)

