"""`meshconf fetch`: download the publicly available model files into the data folder.

Downloads resume after an interruption, are checked (size, sha256 where known, and a structural load), and land
atomically. SMPL needs a registration and is never downloaded; `meshconf doctor` says where to put it.
"""

from __future__ import annotations


from ..assets import catalog as A
from ..engine.fetching import fetch_assets


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", help=f"data folder (default: ${A.ENV_DATA} or {A.default_data_dir()})")
    parser.add_argument("--only", nargs="+", metavar="FILE",
                        choices=[a.relpath for a in A.ASSETS if a.downloadable] + [a.name for a in A.ASSETS
                                                                                  if a.downloadable],
                        help="fetch only these files: " + ", ".join(a.relpath for a in A.ASSETS if a.downloadable))
    parser.add_argument("--mirror", help="base URL of a mirror holding the files under their original names")
    parser.add_argument("--force", action="store_true", help="download again even if present")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


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
