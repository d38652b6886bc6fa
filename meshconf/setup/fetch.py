"""`meshconf fetch`: download the publicly available model files into the data folder.

Downloads resume after an interruption, are checked (size, sha256 where known, and a structural load), and land
atomically. SMPL needs a registration and is never downloaded; `meshconf doctor` says where to put it.
"""

from __future__ import annotations

import os
import sys

from . import assets as A
from .download import download
from ..errors import MeshconfError
from .validate import check_asset


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", help=f"data folder (default: ${A.ENV_DATA} or {A.default_data_dir()})")
    parser.add_argument("--only", nargs="+", metavar="FILE",
                        choices=[a.relpath for a in A.ASSETS if a.downloadable] + [a.name for a in A.ASSETS
                                                                                  if a.downloadable],
                        help="fetch only these files: " + ", ".join(a.relpath for a in A.ASSETS if a.downloadable))
    parser.add_argument("--mirror", help="base URL of a mirror holding the files under their original names")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def source_url(a: A.Asset, mirror: str | None) -> str:
    return a.url if not mirror else mirror.rstrip("/") + "/" + a.url.rsplit("/", 1)[-1]


ARCHIVE_MAX_BYTES = 2 << 30  # SPIN's data.tar.gz; anything far larger is not that archive


def _checker(name: str):
    def verify(path: str) -> None:
        check_asset(name, path)
    return verify


def fetch_assets(assets, root, mirror=None, force=False, progress=True, log=print) -> list[str]:
    """Download the given (downloadable) assets into `root`; returns the paths written.

    A file already present is checked again (it may have been copied in, or left by an older version); one that
    fails is moved to `<file>.invalid` and fetched again. A new file is checked before it gets its final name."""
    written = []
    archives = {}
    pending = []
    for a in assets:
        if not a.downloadable:
            continue
        present = A.locate(a.name, root)
        if present is None or force:
            pending.append(a)
            continue
        try:
            check_asset(a.name, present)
        except MeshconfError as exc:
            os.replace(present, present + ".invalid")
            log(f"  invalid   {a.relpath} ({exc}); moved to {present}.invalid, fetching it again")
            pending.append(a)
            continue
        log(f"  ok        {a.relpath}")
    for a in pending:
        dest = os.path.join(root, a.relpath)
        url = source_url(a, mirror)
        if a.archive_member:
            if url not in archives:
                archives[url] = _fetch_archive(url, root, progress, log)
            try:
                _extract_checked(a, archives[url], dest)
            except MeshconfError as exc:
                if "failed its check" in str(exc):
                    raise
                # a truncated archive (an interrupted earlier run): fetch it again once
                log(f"  refetch   {url} ({exc})")
                os.remove(archives[url])
                archives[url] = _fetch_archive(url, root, progress, log)
                _extract_checked(a, archives[url], dest)
        else:
            log(f"  download  {url}")
            download(url, dest, sha256=a.sha256, size=a.size, progress=progress, verify=_checker(a.name),
                     max_bytes=a.max_bytes)
        log(f"  fetched   {a.relpath}")
        written.append(dest)
    for archive in archives.values():
        if os.path.exists(archive):
            os.remove(archive)
    return written


def _fetch_archive(url: str, root: str, progress: bool, log) -> str:
    archive = os.path.join(root, ".downloads", url.rsplit("/", 1)[-1])
    if not os.path.exists(archive):
        log(f"  download  {url}")
        download(url, archive, progress=progress, max_bytes=ARCHIVE_MAX_BYTES)
    return archive


def _extract_checked(a: A.Asset, archive: str, dest: str) -> None:
    """The member to a temporary name, checked, then renamed: `dest` is never an unchecked file."""
    part = dest + ".part"
    A.extract_member(archive, a.archive_member, part)
    try:
        check_asset(a.name, part)
    except MeshconfError as exc:
        os.replace(part, dest + ".invalid")
        raise MeshconfError(f"{a.relpath} from {archive} failed its check and was moved to {dest}.invalid: {exc}")\
            from None
    os.replace(part, dest)


def run(args) -> int:
    root = A.data_dir(args.data_dir)
    by_file = {a.relpath: a for a in A.ASSETS}
    chosen = ([by_file[n] if n in by_file else A.asset(n) for n in args.only] if args.only
              else [a for a in A.ASSETS if a.downloadable])
    print(f"meshconf fetch into {root}")
    fetch_assets(chosen, root, mirror=args.mirror, force=args.force, progress=not args.no_progress)
    manual = [a for a in A.ASSETS if not a.downloadable and A.locate(a.name, root) is None]
    for a in manual:
        print(f"  manual    {a.relpath}: {a.instructions}")
    return 0


def main(argv=None) -> int:
    from ..cli import job_main
    return job_main("fetch", argv)


if __name__ == "__main__":
    sys.exit(main())
