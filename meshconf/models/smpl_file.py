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


MAX_DENSE = 10**8  # elements of one densified sparse matrix (SMPL's regressor has 165,360)


def _checked_sparse(value, key: str) -> np.ndarray:
    """A sparse matrix from a file, densified only after its structure is checked: scipy trusts `indices`/`indptr`
    when densifying, so a crafted file could otherwise write outside the array (seen: a segfault)."""
    shape = getattr(value, "_shape", None) or getattr(value, "shape", None)
    try:
        rows, cols = (int(n) for n in shape)
    except (TypeError, ValueError):
        raise ValueError(f"sparse {key} has no valid 2-D shape") from None
    if rows < 0 or cols < 0 or rows * cols > MAX_DENSE:
        raise ValueError(f"sparse {key} declares shape ({rows}, {cols}), beyond any SMPL model")
    data = np.asarray(getattr(value, "data", None))
    if data.ndim != 1 or not (np.issubdtype(data.dtype, np.floating) or np.issubdtype(data.dtype, np.integer)):
        raise ValueError(f"sparse {key} holds non-numeric or misshapen data")
    if value.format in ("csr", "csc"):
        major, minor = (rows, cols) if value.format == "csr" else (cols, rows)
        indptr, indices = np.asarray(value.indptr), np.asarray(value.indices)
        if (indptr.ndim != 1 or indices.ndim != 1 or len(indptr) != major + 1 or indptr[0] != 0
                or indptr[-1] != len(indices) or len(indices) != len(data) or (np.diff(indptr) < 0).any()
                or (len(indices) and (indices.min() < 0 or indices.max() >= minor))):
            raise ValueError(f"sparse {key} has indices or index pointers that do not fit its shape ({rows}, {cols})")
    elif value.format == "coo":
        r, c = np.asarray(value.row), np.asarray(value.col)
        if (r.shape != data.shape or c.shape != data.shape
                or (len(data) and (r.min() < 0 or r.max() >= rows or c.min() < 0 or c.max() >= cols))):
            raise ValueError(f"sparse {key} has coordinates that do not fit its shape ({rows}, {cols})")
    else:
        raise ValueError(f"sparse {key} is in an unexpected format ({value.format})")
    return value.toarray()


def _to_plain(value, key: str) -> np.ndarray:
    if isinstance(value, _ChumpyStandIn):
        value = value.to_array(key)
    if scipy.sparse.issparse(value):
        value = _checked_sparse(value, key)
    return np.asarray(value)


def _check_indices(data: "SMPLData") -> list[str]:
    """Index arrays must point inside the arrays they index (faces into vertices, the tree into joints)."""
    nv, nj = data.v_template.shape[0], data.kintree_table.shape[1]
    bad = []
    faces = data.f
    if not np.issubdtype(faces.dtype, np.integer) and not np.array_equal(faces, np.round(faces)):
        bad.append("f holds non-integer vertex indices")
    elif faces.size and (faces.min() < 0 or faces.max() >= nv):
        bad.append(f"f holds vertex indices outside 0..{nv - 1}")
    tree = data.kintree_table.astype(np.int64) if np.isfinite(data.kintree_table).all() else None
    if tree is None:
        bad.append("kintree_table holds non-finite values")
    else:
        parents = tree[0, 1:]
        if (tree[1] < 0).any() or (tree[1] >= nj).any() or (parents < 0).any() or (parents >= nj).any():
            bad.append(f"kintree_table holds joint indices outside 0..{nj - 1}")
    if data.J_regressor.shape[0] != nj or data.weights.shape[1] != nj:
        bad.append(f"J_regressor {data.J_regressor.shape} and weights {data.weights.shape} do not match the "
                   f"{nj} joints of kintree_table")
    return bad


def _from_mapping(raw, path: str) -> SMPLData:
    if not hasattr(raw, "keys"):
        raise MeshconfError(f"{path} is not an SMPL model file (no dictionary of arrays inside)")
    missing = [k for k in REQUIRED_KEYS if k not in raw]
    if missing:
        raise MeshconfError(f"{path} is not an SMPL model file: missing {', '.join(missing)}")
    try:
        data = SMPLData(**{k: _to_plain(raw[k], k) for k in REQUIRED_KEYS})
    except ValueError as exc:
        raise MeshconfError(f"{path} is not a valid SMPL model file: {exc}") from None
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
    problems = _check_indices(data)
    if problems:
        raise MeshconfError(f"{path} is not a valid SMPL model file: {'; '.join(problems)}")
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
    from ..files.fileio import atomic_path

    with atomic_path(out_path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **data.as_dict())
