"""Reading SMPL model files without chumpy and without running code from them.

The official SMPL pickles (Python 2, latin-1) hold numpy arrays, a scipy.sparse regressor and chumpy `Ch` objects.
A restricted unpickler resolves only those globals: numpy array reconstruction, scipy's sparse matrices, and chumpy
classes, which are replaced by an inert stand-in that keeps the array stored in them. Any other global (os.system,
builtins.eval, ...) is refused before anything runs.
"""

from __future__ import annotations

import copyreg
import os
import pickle
import zipfile
from dataclasses import dataclass

import numpy as np
import scipy.sparse

from ..errors import MeshconfError

REQUIRED_KEYS = ("v_template", "shapedirs", "posedirs", "J_regressor", "weights", "kintree_table", "f")


class _ChumpyStandIn:
    """Inert replacement for chumpy objects: remembers the pickled state, runs nothing."""

    def __init__(self, *args, **kwargs):
        self._state = {}

    def __setstate__(self, state):
        self._state = state if isinstance(state, dict) else {"state": state}

    def to_array(self, key: str) -> np.ndarray:
        x = self._state.get("x")
        if isinstance(x, np.ndarray):
            return x
        if isinstance(x, _ChumpyStandIn):
            return x.to_array(key)
        raise MeshconfError(f"SMPL entry '{key}' is a derived chumpy expression that cannot be read without chumpy; "
                            f"convert the file once where chumpy works, or use the .npz form")


def _safe_reconstructor(cls, base, state):
    if cls is not _ChumpyStandIn and not (isinstance(cls, type) and issubclass(cls, np.ndarray)):
        raise pickle.UnpicklingError(f"refusing to reconstruct {cls!r}")
    return copyreg._reconstructor(cls, base, state)


def _latin1_bytes(text, encoding="latin1"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(text, "latin1").
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise pickle.UnpicklingError(f"refusing _codecs.encode with encoding {encoding!r}")
    return text.encode("latin1")


def _allowed_global(module: str, name: str):
    if (module, name) == ("_codecs", "encode"):
        return _latin1_bytes
    if (module, name) in {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct")}:
        return np._core.multiarray._reconstruct
    if (module, name) in {("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar")}:
        return np._core.multiarray.scalar
    if module == "numpy" and name in ("ndarray", "dtype"):
        return getattr(np, name)
    if module.startswith("scipy.sparse") and name in ("csc_matrix", "csr_matrix", "coo_matrix"):
        return getattr(scipy.sparse, name)
    if module == "chumpy" or module.startswith("chumpy."):
        return _ChumpyStandIn
    if module in ("copy_reg", "copyreg") and name == "_reconstructor":
        return _safe_reconstructor
    if module in ("__builtin__", "builtins") and name in ("object", "set", "frozenset"):
        return {"object": object, "set": set, "frozenset": frozenset}[name]
    return None


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only the globals an SMPL model file legitimately contains."""

    def find_class(self, module, name):
        obj = _allowed_global(module, name)
        if obj is None:
            raise pickle.UnpicklingError(f"forbidden global {module}.{name}")
        return obj


@dataclass
class SMPLData:
    """The arrays of an SMPL model, as plain numpy (the smplx `Struct` fields)."""

    v_template: np.ndarray  # (6890, 3)
    shapedirs: np.ndarray  # (6890, 3, B)
    posedirs: np.ndarray  # (6890, 3, 207)
    J_regressor: np.ndarray  # (24, 6890), dense
    weights: np.ndarray  # (6890, 24)
    kintree_table: np.ndarray  # (2, 24)
    f: np.ndarray  # (F, 3)

    def as_dict(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in REQUIRED_KEYS}


def _to_plain(value, key: str) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        value = value.to_array(key)
    if scipy.sparse.issparse(value):
        value = value.toarray()
    return np.asarray(value)


def _from_mapping(raw, path: str) -> SMPLData:
    if not hasattr(raw, "keys"):
        raise MeshconfError(f"{path} is not an SMPL model file (no dictionary of arrays inside)")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise MeshconfError(f"{path} is not an SMPL model file: missing {', '.join(missing)}")
    data = SMPLData(**{k: _to_plain(raw[k], k) for k in REQUIRED_KEYS})
    nv = data.v_template.shape[0]
    checks = {
        "v_template": data.v_template.shape == (nv, 3),
        "shapedirs": data.shapedirs.ndim == 3 and data.shapedirs.shape[:2] == (nv, 3),
        "posedirs": data.posedirs.ndim == 3 and data.posedirs.shape[:2] == (nv, 3),
        "J_regressor": data.J_regressor.ndim == 2 and data.J_regressor.shape[1] == nv,
        "weights": data.weights.ndim == 2 and data.weights.shape[0] == nv,
        "kintree_table": data.kintree_table.ndim == 2 and data.kintree_table.shape[0] == 2,
        "f": data.f.ndim == 2 and data.f.shape[1] == 3,
    }
    bad = [k for k, ok in checks.items() if not ok]
    if bad:
        raise MeshconfError(f"{path}: SMPL arrays with unexpected shapes: "
                            + ", ".join(f"{k} {getattr(data, k).shape}" for k in bad))
    return data


def read_smpl_file(path) -> SMPLData:
    """Read an SMPL `.pkl` (official or plain) or `.npz` model file, safely."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MeshconfError(f"SMPL model file not found: {path}. "
                            f"Register at https://smpl.is.tue.mpg.de and place SMPL_NEUTRAL.pkl there (see `meshconf doctor`)")
    if path.endswith(".npz"):
        try:
            with np.load(path, allow_pickle=False) as npz:
                raw = {k: npz[k] for k in npz.files}
        except (ValueError, OSError, zipfile.BadZipFile, EOFError) as exc:
            raise MeshconfError(f"cannot read SMPL model {path} (truncated or not an npz?): {exc}") from None
        return _from_mapping(raw, path)
    try:
        with open(path, "rb") as fh:
            raw = RestrictedUnpickler(fh, encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise MeshconfError(f"refusing to load SMPL model {path}: {exc} (an SMPL file holds only numpy, scipy.sparse "
                            f"and chumpy arrays; nothing in it was executed)") from None
    except (EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError, MemoryError) as exc:
        raise MeshconfError(f"cannot read SMPL model {path} (truncated or not an SMPL pickle?): "
                            f"{type(exc).__name__}: {exc}") from None
    return _from_mapping(raw, path)


def write_smpl_npz(data: SMPLData, out_path) -> None:
    """Write the plain, pickle-free npz form atomically."""
    out_path = os.fspath(out_path)
    from ..fileio import atomic_path

    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **data.as_dict())
