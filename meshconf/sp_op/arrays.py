"""The array set `meshconf extract` writes and `prepare`, `evaluate`, `calibrate` and `qualitative` read: the file
of each array (one place for the names), and one annotation row's numbers looked up through the set's manifest.

    <name>_sp_op.npy   ED, (N, 14) float64, normalised units (112 px)    <name>_manifest.json  files, SHA-256, rows
    <name>_sp_gt.npy   SE (labels only)                                   <name>_occluded_joint.npy  with --occlude
    <name>_conf.npy    OpenPose score per joint                           <name>_signals.npy   with --signals
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..errors import MeshconfError
from ..files.fileio import parse_json, verify_manifest

SUFFIXES = {"ed": "_sp_op.npy", "se": "_sp_gt.npy", "conf": "_conf.npy", "signals": "_signals.npy",
            "occluded_joint": "_occluded_joint.npy", "manifest": "_manifest.json"}
CORE = ("ed", "se", "conf")  # every set has these three


def array_path(folder: str, name: str, key: str) -> str:
    """Where array `key` ("ed", "se", "conf", "signals", "occluded_joint" or "manifest") of set `name` lives."""
    return os.path.join(folder, name + SUFFIXES[key])


@dataclass
class ArrayRow:
    row: int  # row in the arrays
    ed: np.ndarray  # (14,) normalised units
    se: np.ndarray  # (14,)
    conf: np.ndarray  # (14,)
    matched_by: str  # "manifest" or "position"
    occluded_joint: int = -1  # occluded arrays (`extract --occlude`): the J14 joint this row's crop had covered
    occ_size: int = 0


def find_row(arrays_dir: str, name: str, imgname: str, center, index: int, rows_expected: int,
             by_position: bool = False) -> ArrayRow:
    """The ED/SE/confidence row of one annotation row, looked up by its image name and box centre."""
    paths = {k: array_path(arrays_dir, name, k) for k in ("ed", "se", "conf")}
    missing = [p for p in paths.values() if not os.path.isfile(p)]
    if missing:
        raise MeshconfError(f"{missing[0]} not found; make the arrays with `meshconf extract ... --name {name}`")
    manifest_path = array_path(arrays_dir, name, "manifest")
    manifest = None
    if os.path.isfile(manifest_path):
        try:
            with open(manifest_path) as fh:
                manifest = parse_json(fh)
        except (OSError, ValueError) as exc:
            raise MeshconfError(f"{manifest_path} is not readable JSON ({exc}); extract the arrays again") from None
        verify_manifest(manifest, arrays_dir, manifest_path)  # the arrays are the set the manifest describes
    try:
        data = {k: np.load(p, allow_pickle=False) for k, p in paths.items()}
    except (OSError, ValueError, EOFError) as exc:
        raise MeshconfError(f"cannot read the arrays {name}_*.npy in {arrays_dir} ({exc}); extract them again")\
            from None
    if manifest is not None:
        keys = manifest.get("row_keys")
        if keys is None:
            raise MeshconfError(f"{manifest_path} has no row_keys; extract again with this meshconf version")
        wanted = [str(imgname), round(float(center[0]), 2), round(float(center[1]), 2)]
        matches = [i for i, k in enumerate(keys) if k == wanted]
        if not matches:
            raise MeshconfError(f"{imgname} (box centre {wanted[1]}, {wanted[2]}) is not in {manifest_path}: these "
                                "arrays were made from another annotation file")
        row, how = matches[0], "manifest"
    elif by_position:
        if len(data["ed"]) != rows_expected:
            raise MeshconfError(f"{paths['ed']} has {len(data['ed'])} rows, the annotation file "
                                f"{rows_expected}: they cannot be matched by position")
        row, how = index, "position"
    else:
        raise MeshconfError(f"no {manifest_path}: rows cannot be matched to images. Use arrays from `meshconf "
                            "extract`, or --by-position if you know they follow the annotation file's order")
    found = ArrayRow(row, data["ed"][row].astype(np.float64), data["se"][row].astype(np.float64),
                     data["conf"][row].astype(np.float64), how)
    occluded_path = array_path(arrays_dir, name, "occluded_joint")
    if manifest is not None and manifest.get("occluded") and os.path.isfile(occluded_path):
        found.occluded_joint = int(np.load(occluded_path, allow_pickle=False)[row])
        found.occ_size = int(manifest.get("occ_size", 40))
    return found
