"""`meshconf demo [IMAGE|FOLDER|VIDEO ...]`: where is the mesh wrong, for every person in any photo.

Per input: person boxes (automatic from OpenPose on the full image; `--cropped` for the original's pre-cropped
input; `--bbox X Y W H`), then per person SPIN + SMPL, OpenPose on the crop, the spine-aligned ED and the shipped
estimator, and the pictures and numbers below, in a folder per input:

    index.html                                   the results page: overview, one card per person, 3D view
    overview.png, report.json                    the whole image with one box per person, coloured by P(accurate)
    person<k>/crop.png                           the 224x224 crop
    person<k>/mc.png                             mesh-classifier render (green = accurate, red = inaccurate)
    person<k>/parts.png                          per-part render (estimated error, px) with a colour bar
    person<k>/panel.png                          keypoints of both models, both renders, ED per joint
    person<k>/report.json, mesh.ply, mesh.glb    numbers; the coloured mesh (glTF axes: y up)

Videos give one folder per analysed frame and `annotated.mp4`. A bad input is reported in one line and the rest
still runs. With no input it runs on the bundled public-domain example photo.
"""

from __future__ import annotations

import itertools
import os
import sys
from importlib import resources

import numpy as np

from ..errors import MeshconfError
from ..engine.options import (add_model_options, check_accept_precision, check_model_options, check_render_res,
    model_choice)
from ..files.fileio import atomic_path, commit_folder, staging_folder, write_json
from ..demo.pages import write_video_page
from ..files.imageio import expand_inputs, read_bgr, to_bgr_u8

EXAMPLE = "astronaut.jpg"
MAX_PIXELS = 20000 * 20000  # larger images are refused (overridable with --max-pixels)
MAX_BOX_FACTOR = 4
BATCH_PIXELS = 48_000_000  # images held at once, in pixels (3 bytes each)


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="*", help="images, folders of images, or videos (default: the bundled "
                        "example photo)")
    parser.add_argument("--img", action="append", default=[],
                        help="an input image, as in the original demo: it is taken as a crop with the person centred "
                             "(--cropped) unless --bbox is given")
    parser.add_argument("--out", help="output folder (default: <input name>_meshconf next to the current folder)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--cropped", action="store_true",
                       help="the input is already a crop with the person centred (the original demo's assumption)")
    where.add_argument("--bbox", nargs=4, type=float, metavar=("X", "Y", "W", "H"), help="one person box in px")
    parser.add_argument("--max-people", type=int, default=None,
                        help="keep only the N strongest people per image (default: everyone found, as the API)")
    parser.add_argument("--legacy-ed", action="store_true",
                        help="the original demo's ED (subset[0], no alignment); not what the estimators learned")
    parser.add_argument("--estimator", default="default", help="default, original, or a .safetensors file")
    parser.add_argument("--render-res", type=int, default=448, help="render size in px (default: %(default)s)")
    parser.add_argument("--renderer", default="auto", choices=("auto", "software", "pyrender"),
                        help="pyrender (OpenGL offscreen, EGL/OSMesa) or the built-in software renderer; auto "
                             "uses pyrender only on a GPU-backed OpenGL context (on a CPU's llvmpipe it is about 8x "
                             "slower) (default: %(default)s)")
    parser.add_argument("--every", type=int, default=1, help="videos: analyse every N-th frame (default: %(default)s)")
    parser.add_argument("--max-frames", type=int, default=0, help="videos: stop after this many analysed frames")
    add_model_options(parser, 16, "crops (and images) per forward pass")
    parser.add_argument("--accept-precision", type=float,
                        help="accept a mesh when P(accurate) reaches the estimator's threshold for this precision of "
                             "accepted meshes (an operating point shipped with the weights, e.g. 0.9); reports say "
                             "which meshes pass")
    parser.add_argument("--max-pixels", type=float, default=MAX_PIXELS,
                        help="refuse larger images, read from the file's header before decoding (default: "
                             "%(default).0f; decoding needs 6 bytes per pixel for a moment, then the demo holds 3 "
                             "bytes per pixel beside about 1 GB of models)")


def check_arguments(args) -> None:
    """Every range check before any model loads: a bad option costs no waiting."""
    check_model_options(args)
    for option, value, least in (("--every", args.every, 1), ("--max-people", args.max_people, 1),
                                 ("--max-frames", args.max_frames, 0)):
        if value is not None and value < least:
            raise MeshconfError(f"{option} must be at least {least}, got {value}")
    check_render_res(args.render_res)
    check_accept_precision(args.accept_precision)
    if not (np.isfinite(args.max_pixels) and args.max_pixels >= 1):
        raise MeshconfError(f"--max-pixels must be a positive number, got {args.max_pixels}")
    if args.bbox is not None:
        x, y, w, h = args.bbox
        if not np.isfinite(args.bbox).all():
            raise MeshconfError(f"--bbox must be four finite numbers, got {' '.join(map(str, args.bbox))}")
        if w <= 0 or h <= 0:
            raise MeshconfError(f"--bbox needs a positive width and height, got {w:g}x{h:g}")
    if args.out and os.path.exists(args.out) and not os.path.isdir(args.out):
        raise MeshconfError(f"--out {args.out} is a file; give a folder (it is created if missing)")


def check_bbox(bbox, width: int, height: int) -> None:
    """A user box must overlap the image and be at most a few times its size (a 1e7-px box is a typo)."""
    x, y, w, h = bbox
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise MeshconfError(f"--bbox {x:g} {y:g} {w:g} {h:g} lies outside the {width}x{height} image; give X Y W H "
                            f"in pixels of that image")
    if max(w, h) > MAX_BOX_FACTOR * max(width, height):
        raise MeshconfError(f"--bbox {w:g}x{h:g} is more than {MAX_BOX_FACTOR}x the {width}x{height} image; give "
                            f"X Y W H in pixels of that image")


def output_options(args):
    """The demo's output choices, read from `args` once."""
    from ..engine.outputs import OutputOptions

    return OutputOptions(render_res=args.render_res, renderer=args.renderer, accept_precision=args.accept_precision,
                         estimator=args.estimator)


def analyse_images(images_bgr: list[np.ndarray], names: list[str], folders: list[str], engine, args,
                   on_image=None) -> list[dict]:
    """Everything for several images through the `MeshConfidence` engine; writes and returns their reports."""
    if args.accept_precision is not None:  # an estimator without that operating point: one line, nothing written
        engine.models.estimator.threshold_for(args.accept_precision)
    if args.bbox:
        for image in images_bgr:
            check_bbox(args.bbox, image.shape[1], image.shape[0])
    results = engine.analyse(images_bgr, boxes=[args.bbox] * len(images_bgr) if args.bbox else None,
                             cropped=args.cropped, max_people=args.max_people, legacy_ed=args.legacy_ed,
                             batch_size=args.batch_size)
    options, reports = output_options(args), []
    for image, name, folder, result in zip(images_bgr, names, folders, results):
        reports.append(engine.save(result, folder, image=image, options=options, name=name))
        if on_image is not None:
            on_image(name, folder, reports[-1])
    return reports


def _frames(capture, every: int, max_frames: int):
    """(index, frame) of every `every`-th frame, at most `max_frames` (0 = all)."""
    index = taken = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        if index % every == 0:
            yield index, frame
            taken += 1
            if max_frames and taken >= max_frames:
                return
        index += 1


def run_video(path: str, folder: str, models, args) -> dict:
    import cv2
    from tqdm import tqdm

    capture = cv2.VideoCapture(path)
    if not capture.isOpened():
        raise MeshconfError(f"{path}: not a readable video")
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    writer, frames = None, []
    os.makedirs(folder, exist_ok=True)
    video_out = os.path.join(folder, "annotated.mp4")
    expected = None if total is None else -(-total // args.every)
    if expected and args.max_frames:
        expected = min(expected, args.max_frames)
    with atomic_path(video_out, ".mp4") as partial:  # the video appears only when complete
        try:
            with tqdm(total=expected, desc=os.path.basename(path), unit="frame",
                      disable=True if args.no_progress else None) as bar:
                stream = _frames(capture, args.every, args.max_frames)
                while True:
                    chunk = [(i, to_bgr_u8(f, f"{path} frame {i}"))
                             for i, f in itertools.islice(stream, args.batch_size)]
                    if not chunk:
                        break
                    folders = [os.path.join(folder, f"frame_{i:06d}") for i, _ in chunk]
                    frames += analyse_images([f for _, f in chunk], [f"{path}#{i}" for i, _ in chunk], folders,
                                             models, args)
                    for frame_folder in folders:
                        annotated = cv2.imread(os.path.join(frame_folder, "overview.png"))
                        if writer is None:
                            height, width = annotated.shape[:2]
                            writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*"mp4v"),
                                                     fps / args.every, (width, height))
                        writer.write(annotated)
                    bar.update(len(chunk))
        finally:
            capture.release()
            if writer is not None:
                writer.release()
        if not frames:
            raise MeshconfError(f"{path}: the video has no readable frames")
    report = {"input": path, "frames": len(frames), "fps": fps, "every": args.every,
              "annotated_video": "annotated.mp4", "frame_reports": [f"frame_{i * args.every:06d}/report.json"
                                                              for i in range(len(frames))]}
    write_json(os.path.join(folder, "report.json"), report)
    write_video_page(folder, report)
    return report


def output_folders(args, paths: list[str]) -> dict[str, str]:
    """One output folder per input that no other input shares. One input: `--out` (default `<stem>_meshconf`).
    Several: `<out>/<stem>` while the stems differ, else the path relative to the inputs' common folder, with the
    suffix kept where two inputs differ only by it (a/x.jpg, a/x.png, b/x.png -> a/x_jpg, a/x_png, b/x)."""
    paths = list(dict.fromkeys(paths))  # the same file given twice is analysed once
    if len(paths) == 1:
        stem = os.path.splitext(os.path.basename(os.path.normpath(paths[0])))[0]
        return {paths[0]: args.out or f"{stem}_meshconf"}
    out = args.out or "meshconf_results"
    absolute = [os.path.abspath(p) for p in paths]
    stems = [os.path.splitext(os.path.basename(p))[0] for p in absolute]
    if len(set(stems)) == len(stems):
        names = stems
    else:
        common = os.path.commonpath([os.path.dirname(p) for p in absolute])
        relative = [os.path.relpath(p, common) for p in absolute]
        bare = [os.path.splitext(r)[0] for r in relative]
        names = [b if bare.count(b) == 1 else b + "_" + os.path.splitext(r)[1].lstrip(".").lower()
                 for b, r in zip(bare, relative)]
    folders = {}
    for path, name in zip(paths, names):
        folder = os.path.join(out, name)
        clash = next((other for other, f in folders.items() if f == folder), None)
        if clash is not None:
            raise MeshconfError(f"{clash} and {path} would both write to {folder}; rename one of them")
        folders[path] = folder
    return folders


def check_replaceable(folder: str) -> None:
    """A rerun replaces an input's folder as a whole, so the folder must be one meshconf wrote (or empty)."""
    if os.path.isdir(folder) and os.listdir(folder) and not os.path.isfile(os.path.join(folder, "report.json")):
        raise MeshconfError(f"{folder} exists and is not a meshconf result folder (no report.json); give --out a new "
                            f"or empty folder, so nothing of yours is replaced")


def run(args) -> int:
    # torch and the models are imported and loaded only once the first image is in memory: decoding a big photo
    # briefly needs twice its size, which then does not come on top of them.
    from tqdm import tqdm

    from ..engine.bundle import DEMO_PARTS, require_files

    check_arguments(args)
    if args.img and not args.bbox:
        args.cropped = True  # the original demo assumed its --img was already cropped
    inputs = list(args.inputs) + list(args.img)
    if not inputs:
        inputs = [str(resources.files("meshconf") / "data" / EXAMPLE)]
        print(f"no input given: running on the bundled example photo {inputs[0]}")
    items = expand_inputs(inputs)
    folders_of = output_folders(args, [path for _, path in items])
    items = [(kind, path) for kind, path in dict.fromkeys(items)]
    for folder in folders_of.values():
        check_replaceable(folder)
    # One message naming every missing file, before any waiting; the weights themselves load when the first
    # image is in memory (a big photo's decoding briefly needs twice its size: not on top of the models).
    require_files(DEMO_PARTS, args.data_dir, args.checkpoint, args.offline, progress=not args.no_progress)
    loaded_models = []

    def models():
        if not loaded_models:
            from ..engine.inference import MeshConfidence

            loaded_models.append(MeshConfidence(estimator=args.estimator, **model_choice(args, len(items))))
        return loaded_models[0]
    failures = 0

    def summarise(path, folder, report):
        summary = ", ".join(f"#{k} P(accurate)={p['p_accurate']:.2f} worst={p['worst_joint']}"
                            + ("" if "accepted" not in p else (" accepted" if p["accepted"] else " rejected"))
                            for k, p in enumerate(report["people"])) or "no person found"
        tqdm.write(f"{path}: {summary} -> {folder}/")

    images = [path for kind, path in items if kind == "image"]
    # per image, as each one's pictures are written (not per batch); off with --no-progress or when not a terminal
    with tqdm(total=len(images), desc="images", unit="img", disable=True if args.no_progress else None) as bar:
        loaded, pixels = [], 0

        def done(path, folder, report):
            summarise(path, folder, report)
            bar.update(1)

        def flush():
            if loaded:
                bar.set_postfix_str("networks" if loaded_models else "loading models")
                folders = [folders_of[path] for path, _ in loaded]
                analyse_images([image for _, image in loaded], [path for path, _ in loaded], folders, models(),
                               args, on_image=done)
                bar.set_postfix_str("")
                loaded.clear()

        for path in images:
            try:
                image = read_bgr(path, max_pixels=args.max_pixels)
            except MeshconfError as exc:
                failures += 1
                tqdm.write(f"meshconf demo: {exc}", file=sys.stderr)
                bar.update(1)
                image = None
            if image is not None:
                loaded.append((path, image))
                pixels += image.shape[0] * image.shape[1]
            # a batch is at most --batch-size images and BATCH_PIXELS: a folder of huge photos stays bounded
            if len(loaded) >= args.batch_size or pixels >= BATCH_PIXELS:
                flush()
                pixels = 0
        flush()
    for path in [path for kind, path in items if kind == "video"]:
        folder = folders_of[path]
        try:
            staging = staging_folder(folder)
            try:
                report = run_video(path, staging, models(), args)
            except BaseException:
                import shutil
                shutil.rmtree(staging, ignore_errors=True)
                raise
            commit_folder(staging, folder)
        except MeshconfError as exc:
            failures += 1
            print(f"meshconf demo: {exc}", file=sys.stderr)
            continue
        print(f"{path}: {report['frames']} frames -> {folder}/annotated.mp4")
    return 1 if failures else 0
