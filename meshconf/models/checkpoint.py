"""Reading model files safely and checking them strictly (shared by the SPIN and OpenPose loaders).

`torch.load(weights_only=True)` never runs code from the file. Every failure becomes a one-line `MeshconfError`
that names the file, what was wrong with it, and what file was expected.
"""

from __future__ import annotations

import os
import pickle
import struct
import zipfile
from collections.abc import Callable, Mapping

import torch

from ..errors import MeshconfError
from ..files.fileio import parse_json


def read_torch_file(path, what: str, hint: str = "") -> object:
    """`torch.load(path, weights_only=True)` on the CPU, with one-line errors for missing/truncated/foreign files."""
    path = os.fspath(path)
    hint = f" {hint}" if hint else ""
    if not os.path.exists(path):
        raise MeshconfError(f"{what} not found: {path}.{hint}")
    if os.path.isdir(path):
        raise MeshconfError(f"{what} path is a folder, expected a file: {path}.{hint}")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeshconfError(f"{what} {path} contains objects a weights file must not hold and was not loaded "
                            f"(nothing in it was executed): {first}.{hint}") from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, ValueError, OSError, KeyError, IndexError, TypeError,
            AttributeError, struct.error) as exc:  # what torch raises on a text or random file varies by content
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise MeshconfError(f"{what} {path} is not a readable PyTorch file (truncated or corrupt?): {first}.{hint}") \
            from None


def unwrap_state_dict(obj: object, path, what: str, container_keys=("model", "state_dict")) -> dict:
    """Accept a bare state_dict or a training checkpoint {"model": state_dict, ...}; strip `module.` prefixes."""
    if isinstance(obj, Mapping):
        for key in container_keys:
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise MeshconfError(f"{what} {os.fspath(path)} holds no state_dict of tensors "
                            f"(expected a dict of tensors, or a checkpoint with a 'model' entry)")
    state = {}
    for key, value in obj.items():
        while key.startswith("module."):
            key = key[len("module."):]
        state[key] = value
    return state


def check_state_dict(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple], path, what: str,
                     optional: Callable[[str], bool] = lambda key: False) -> None:
    """Raise one message listing missing, unexpected and misshapen keys; `optional` keys may be absent."""
    missing = [k for k in expected if k not in state and not optional(k)]
    unexpected = [k for k in state if k not in expected]
    misshapen = [f"{k} {tuple(state[k].shape)} != {tuple(expected[k])}"
                 for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or misshapen):
        check_values(state, path, what)
        return

    def brief(items):
        shown = ", ".join(items[:5])
        return shown + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {brief(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {brief(unexpected)}")
    if misshapen:
        parts.append(f"{len(misshapen)} misshapen: {brief(misshapen)}")
    raise MeshconfError(f"{os.fspath(path)} does not fit the {what} ({'; '.join(parts)}); "
                        f"expected {what} weights with {len(expected)} tensors")


def check_values(state: Mapping[str, torch.Tensor], path, what: str) -> None:
    """The published weights are float32 and finite: a file of another precision (float16, integers, complex) or
    with NaN/inf would be cast silently and give wrong results, so it is refused. BatchNorm's step counter is the
    one integer tensor a checkpoint holds."""
    for key, tensor in state.items():
        if key.endswith("num_batches_tracked"):
            continue
        if tensor.dtype != torch.float32:
            raise MeshconfError(f"{os.fspath(path)}: tensor {key} is {str(tensor.dtype).replace('torch.', '')}, "
                                f"expected float32 {what} weights (convert the file with tensor.float() first)")
        if not torch.isfinite(tensor).all():
            raise MeshconfError(f"{os.fspath(path)}: tensor {key} holds NaN or infinite values; the {what} weights "
                                f"are damaged")


# ------------------------------------------------------------------------------------------- fast start-up form
# A model file's checked state dict, re-saved once as safetensors in the cache. Later loads match the source by
# its path, size, times, inode and edge bytes (`_source_key`: not a 200 MB hash) and read the safetensors file, which
# skips unpickling and the value checks (done once, when the fast form was written). Each fast form records the
# source's SHA-256; files are named by it, so equal weights at different paths share one. Loading a fast form
# never executes code (safetensors holds only a JSON header and raw tensor bytes).
FAST_FORM_VERSION = "1"
FAST_FORMS_KEPT = 6  # most recently used fast forms kept; older ones are deleted (each is as large as its model)


def fast_form_dir() -> str | None:
    """Where fast forms live, or None when disabled (MESHCONF_FAST_LOAD=0)."""
    if os.environ.get("MESHCONF_FAST_LOAD", "1").strip().lower() in ("0", "false", "no", "off"):
        return None
    from ..assets.catalog import default_data_dir

    return os.path.join(default_data_dir(), "fast")


EDGE_BYTES = 1 << 20


def _source_key(path: str, kind: str) -> str:
    """The source as it is now: path, size, inode, modification and change times, and a hash of its first and last
    MiB. A file rewritten in place keeps its inode and can be given its old size and mtime back (`os.utime`), but
    not its ctime; a copy over it changes the edges too. So a stale fast form is never served."""
    import hashlib

    from ..files.fileio import sha256_bytes

    real = os.path.realpath(path)
    st = os.stat(real)
    edges = hashlib.sha256()
    with open(real, "rb") as fh:
        edges.update(fh.read(EDGE_BYTES))
        if st.st_size > EDGE_BYTES:
            fh.seek(max(EDGE_BYTES, st.st_size - EDGE_BYTES))
            edges.update(fh.read(EDGE_BYTES))
    return sha256_bytes(f"{FAST_FORM_VERSION}|{kind}|{real}|{st.st_size}|{st.st_mtime_ns}|{st.st_ctime_ns}|"
                        f"{st.st_ino}|{edges.hexdigest()}".encode())[:32]


def read_fast_form(path, kind: str) -> dict | None:
    """The cached checked state dict of `path`, or None (no fast form yet, disabled, or unreadable)."""
    folder = fast_form_dir()
    if folder is None:
        return None
    try:
        index = os.path.join(folder, "index", _source_key(os.fspath(path), kind) + ".json")
        with open(index) as fh:
            entry = parse_json(fh)
        fast = os.path.join(folder, entry["file"])
        from safetensors import safe_open
        from safetensors.torch import load_file

        with safe_open(fast, framework="pt") as handle:
            meta = handle.metadata() or {}
        if meta.get("source_sha256") != entry["sha256"] or meta.get("kind") != kind:
            return None
        state = load_file(fast)
        os.utime(fast)  # most recently used, for eviction
        return state
    except Exception:  # a missing, damaged or foreign fast form: read the source instead
        return None


def write_fast_form(path, kind: str, state: Mapping[str, torch.Tensor]) -> None:
    """Save the checked `state` of `path` as its fast form (best effort: a read-only or full cache is ignored)."""
    from ..files.fileio import atomic_path, file_fingerprint, json_bytes, write_atomic

    folder = fast_form_dir()
    if folder is None:
        return
    try:
        from safetensors.torch import save_file

        sha = file_fingerprint(path)
        name = f"{sha[:32]}-{kind}.safetensors"
        fast = os.path.join(folder, name)
        # written anew even when a file of that name exists: this runs only when reading it failed or did not fit
        with atomic_path(fast) as tmp:
            save_file({k: v.detach().contiguous() for k, v in state.items()}, tmp,
                      metadata={"source_sha256": sha, "kind": kind, "version": FAST_FORM_VERSION})
        write_atomic(os.path.join(folder, "index", _source_key(os.fspath(path), kind) + ".json"),
                     json_bytes({"file": name, "sha256": sha, "source": os.path.realpath(path)}))
        _evict(folder)
    except Exception:  # noqa: BLE001 - best effort: a read-only or full cache (safetensors raises its own
        return          # error type for I/O failures) must not stop the load that already succeeded


def _fits(state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple]) -> bool:
    return (set(state) <= set(expected)
            and all(tuple(v.shape) == tuple(expected[k]) for k, v in state.items())
            and all(v.dtype == torch.float32 or k.endswith("num_batches_tracked") for k, v in state.items())
            and all(k in state or k.endswith("num_batches_tracked") for k in expected))


def _evict(folder: str) -> None:
    forms = sorted((os.path.getmtime(os.path.join(folder, n)), n) for n in os.listdir(folder)
                   if n.endswith(".safetensors"))
    for _, name in forms[:-FAST_FORMS_KEPT]:
        os.unlink(os.path.join(folder, name))  # index entries that point at it then miss and fall back


def load_checked(path, kind: str, read_and_check: Callable[[], dict],
                 expected: Mapping[str, tuple] | None = None) -> dict:
    """The state dict of `path` (module keys), from its fast form when there is one; else `read_and_check()`
    reads the source with every check, and its result becomes the fast form. A fast form whose keys, shapes or
    dtypes do not fit `expected` (key -> shape) is ignored, never loaded."""
    state = read_fast_form(path, kind)
    if state is not None and expected is not None and not _fits(state, expected):
        state = None
    if state is None:
        state = read_and_check()
        write_fast_form(path, kind, state)
    return state
