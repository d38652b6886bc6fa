"""`meshconf fetch`: download the publicly available model files into the data folder.

Downloads resume after an interruption, are checked (size, sha256 where known, and a structural load), and land
atomically. SMPL needs a registration and is never downloaded; `meshconf doctor` says where to put it.
"""

from __future__ import annotations

import os
import sys

from . import assets as A
from .download import download
from .errors import MeshconfError
from .validate import check_asset


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", help=f"data folder (default: ${A.ENV_DATA} or {A.default_data_dir()})")
    parser.add_argument("--only", nargs="+", metavar="NAME", choices=[a.name for a in A.ASSETS if a.downloadable],
                        help="fetch only these assets")
    parser.add_argument("--mirror", help="base URL of a mirror holding the files under their original names")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def source_url(a: A.Asset, mirror: str | None) -> str:
    return a.url if not mirror else mirror.rstrip("/") + "/" + a.url.rsplit("/", 1)[-1]


def fetch_assets(assets, root, mirror=None, force=False, progress=True, log=print) -> list[str]:
    """Download the given (downloadable) assets into `root`; returns the paths written."""
    written = []
    archives = {}
    pending = [a for a in assets if a.downloadable and (force or A.locate(a.name, root) is None)]
    for a in assets:
        if a not in pending:
            log(f"  ok        {a.relpath}")
    for a in pending:
        dest = os.path.join(root, a.relpath)
        url = source_url(a, mirror)
        if a.archive_member:
            if url not in archives:
                archive = os.path.join(root, ".downloads", url.rsplit("/", 1)[-1])
                if not os.path.exists(archive):
                    log(f"  download  {url}")
                    download(url, archive, progress=progress)
                archives[url] = archive
            A.extract_member(archives[url], a.archive_member, dest)
        else:
            log(f"  download  {url}")
            download(url, dest, sha256=a.sha256, size=a.size, progress=progress)
        try:
            check_asset(a.name, dest)
        except MeshconfError as exc:
            os.replace(dest, dest + ".invalid")
            raise MeshconfError(f"{a.relpath} from {url} failed its check and was moved to {dest}.invalid: {exc}")\
                from None
        log(f"  fetched   {a.relpath}")
        written.append(dest)
    for archive in archives.values():
        os.remove(archive)
    return written


def run(args) -> int:
    root = A.data_dir(args.data_dir)
    chosen = [A.asset(n) for n in args.only] if args.only else [a for a in A.ASSETS if a.downloadable]
    print(f"meshconf fetch into {root}")
    fetch_assets(chosen, root, mirror=args.mirror, force=args.force, progress=not args.no_progress)
    manual = [a for a in A.ASSETS if not a.downloadable and A.locate(a.name, root) is None]
    for a in manual:
        print(f"  manual    {a.relpath}: {a.instructions}")
    return 0


def main(argv=None) -> int:
    from .cli import job_main
    return job_main("fetch", argv)


if __name__ == "__main__":
    sys.exit(main())
