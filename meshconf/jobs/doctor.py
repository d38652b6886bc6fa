"""`meshconf doctor`: which model files are present, missing or broken, and the exact next step for each."""

from __future__ import annotations

import os
import sys

from ..assets import catalog as A
from ..errors import MeshconfError
from ..engine.fetching import check_recorded
from ..engine.validate import check_asset


def add_arguments(parser) -> None:
    parser.add_argument("--data-dir", help=f"data folder (default: ${A.ENV_DATA} or {A.default_data_dir()})")
    parser.add_argument("--quick", action="store_true", help="only check that files exist, do not load them")
    parser.add_argument("--json", action="store_true",
                        help="one JSON object on stdout (for scripts); exit 0 ready, 1 a required file missing or "
                             "broken, 2 bad arguments")


def diagnose(root, quick=False) -> list[tuple[A.Asset, str, str]]:
    """(asset, status, detail) per asset; status is ok, missing or broken."""
    rows = []
    for a in A.ASSETS:
        path = A.locate(a.name, root)
        if path is None:
            rows.append((a, "missing", A.next_step(a, root)))
            continue
        try:
            if not quick:
                check_asset(a.name, path)
                check_recorded(a, path, root)
            rows.append((a, "ok", path))
        except MeshconfError as exc:
            rows.append((a, "broken", f"{exc}; delete it and get it again"))
    return rows


def run(args) -> int:
    root = A.data_dir(args.data_dir)
    source = "--data-dir" if args.data_dir else (f"${A.ENV_DATA}" if A.ENV_DATA in os.environ
                                                 else "default cache")
    if not args.json:  # with --json, stdout holds the JSON document and nothing else
        print(f"data folder: {root} ({source})")
    rows = diagnose(root, args.quick)
    problems = [a for a, status, _ in rows if status != "ok" and a.required]
    if args.json:
        from ..files.fileio import json_bytes

        sys.stdout.write(json_bytes({
            "data_dir": root, "source": source, "ready": not problems,
            "files": [{"name": a.name, "file": a.relpath, "status": status, "required": a.required,
                       "downloadable": a.downloadable, ("path" if status == "ok" else "next_step"): detail}
                      for a, status, detail in rows]}).decode())
        return 0 if not problems else 1
    width = max(len(a.relpath) for a, _, _ in rows)
    for a, status, detail in rows:
        need = "" if a.required else " (optional)"
        print(f"  {status:8s} {a.relpath:{width}s}  {detail}{need if status != 'ok' else ''}")
    print("ready for the demo" if not problems else
          f"{len(problems)} required file(s) missing or broken: {', '.join(a.relpath for a in problems)}")
    return 0 if not problems else 1
