"""The one small I/O module: atomic writes, strict JSON, SHA-256 and an exclusive folder lock.

Every file meshconf writes goes through `write_atomic` or `atomic_path`: the data lands under a unique temporary name
beside the target and is renamed over it only when complete, so an interrupt or a full disk never leaves half a file
under the final name (the temporary file is removed on failure).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import re
import tempfile

import numpy as np

from ..errors import MeshconfError

CHUNK = 1 << 20


def _permissions(path: str) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the permissions open() would


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path beside `path` for a writer that wants a file name (safetensors, matplotlib, video);
    on success it is renamed to `path`, on any failure it is removed."""
    path = os.fspath(path)
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".tmp-{os.getpid()}-", suffix=suffix if suffix is not None
                               else os.path.splitext(path)[1])
    os.close(fd)
    try:
        yield tmp
        _permissions(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_atomic(path, data: bytes) -> None:
    """Write `data` to `path` atomically, flushed to disk before the rename."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())


def _finite(value, where: str, problems: list[str]):
    """JSON-ready copy of `value`: NaN and infinities become null, and where they were is recorded."""
    if isinstance(value, dict):
        return {k: _finite(v, f"{where}.{k}" if where else str(k), problems) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v, f"{where}[{i}]", problems) for i, v in enumerate(value)]
    if isinstance(value, np.ndarray):
        return _finite(value.tolist(), where, problems)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if not math.isfinite(value):
            problems.append(where or "value")
            return None
        return value
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def json_bytes(data, indent: int | None = 1) -> bytes:
    """Strict JSON (no NaN/Infinity tokens). Non-finite numbers are written as null and, for a dict, listed in a
    `problem` field so that a reader learns what was not a number."""
    problems: list[str] = []
    clean = _finite(data, "", problems)
    if problems and isinstance(clean, dict):
        note = f"non-finite values written as null: {', '.join(problems[:10])}" + \
               (f" (+{len(problems) - 10} more)" if len(problems) > 10 else "")
        clean["problem"] = f"{clean['problem']}; {note}" if clean.get("problem") else note
    return (json.dumps(clean, indent=indent, allow_nan=False) + "\n").encode()


def write_json(path, data, indent: int | None = 1) -> None:
    write_atomic(path, json_bytes(data, indent))


def parse_json(source):
    """`json.load` (a file object) or `json.loads` (text or bytes) for files a user hands us: nesting too deep for
    the parser becomes a ValueError like any other malformed JSON, so callers report it in one line."""
    try:
        return json.loads(source) if isinstance(source, (str, bytes, bytearray)) else json.load(source)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def npz_bytes(arrays: dict, compressed: bool = False) -> bytes:
    buffer = io.BytesIO()
    (np.savez_compressed if compressed else np.savez)(buffer, **arrays)
    return buffer.getvalue()


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path, chunk: int = CHUNK) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


class FolderLock:
    """An exclusive `flock` on `<folder>/<name>`, held while a job writes there. A second process is refused at
    once with the holder's pid. The lock dies with its process (kill -9 included), so it can never go stale."""

    def __init__(self, folder: str, name: str = ".lock", what: str = "this folder"):
        self.folder, self.path, self.what = folder, os.path.join(folder, name), what
        self.fh = None

    def __enter__(self) -> "FolderLock":
        import fcntl

        os.makedirs(self.folder, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise MeshconfError(f"another meshconf process (pid {holder}) is working in {self.folder}; wait for it "
                                f"to finish or give this run another --out") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self.fh = fh
        return self

    def __exit__(self, *exc) -> None:
        if self.fh is not None:
            self.fh.close()  # closing releases the flock
            self.fh = None


def verify_manifest(manifest: dict, folder: str, manifest_path: str) -> None:
    """Check the files a manifest lists under `files` ({name: sha256}) against their hashes: a set of outputs is
    used only as the set that was written together (a crash or a full disk mid-write cannot pair new and old).
    A manifest marked incomplete (written before the arrays, replaced after them) means the write never finished."""
    if manifest.get("complete") is False:
        raise MeshconfError(f"{manifest_path}: the arrays of this set were being written when that run stopped (a "
                            f"crash or a full disk); they may mix two runs. Run the job that wrote them again")
    for name, digest in (manifest.get("files") or {}).items():
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            raise MeshconfError(f"{path} is missing but {manifest_path} lists it; run the job that wrote them again")
        if sha256_file(path) != digest:
            raise MeshconfError(f"{path} does not match the SHA-256 in {manifest_path} (written by another run, "
                                f"or interrupted mid-write); run the job that wrote them again")


_SHA_CACHE: dict[tuple, str] = {}


def file_fingerprint(path) -> str:
    """SHA-256 of a (model) file, computed once per process for an unchanged file."""
    path = os.path.realpath(os.fspath(path))
    stat = os.stat(path)
    key = (path, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns, stat.st_ino)  # ctime: an in-place rewrite
    if key not in _SHA_CACHE:
        _SHA_CACHE[key] = sha256_file(path)
    return _SHA_CACHE[key]


_LEFTOVER = re.compile(r"^\.(?:.*\.)?(?:tmp|old)-(\d+)-")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_leftovers(folder: str) -> list[str]:
    """Remove the temporary files and staging folders that killed meshconf processes left in `folder` (their names
    carry the writer's pid; those of running processes are left alone). Returns what was removed."""
    import shutil

    removed = []
    try:
        names = os.listdir(folder)
    except OSError:
        return removed
    for name in names:
        match = _LEFTOVER.match(name)
        if not match or _alive(int(match.group(1))):
            continue
        path = os.path.join(folder, name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.unlink(path)
            except OSError:
                continue
        removed.append(name)
    return removed


def staging_folder(final: str) -> str:
    """A fresh empty folder beside `final` to write a result set into, before `commit_folder` swaps it in."""
    parent = os.path.dirname(os.path.abspath(final)) or "."
    os.makedirs(parent, exist_ok=True)
    clean_leftovers(parent)
    folder = tempfile.mkdtemp(dir=parent, prefix=f".{os.path.basename(final)}.tmp-{os.getpid()}-")
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(folder, 0o777 & ~umask)  # mkdtemp makes 0700; the result folder gets the permissions mkdir would give
    return folder


def commit_folder(staging: str, final: str) -> None:
    """Replace `final` by `staging` as a whole (no stale files of an earlier run survive). The old folder is moved
    aside first and removed last, so an interrupt leaves either the old or the new result under `final`."""
    import shutil

    old = None
    if os.path.lexists(final):
        old = tempfile.mkdtemp(dir=os.path.dirname(os.path.abspath(final)) or ".",
                               prefix=f".{os.path.basename(final)}.old-{os.getpid()}-")
        os.rmdir(old)
        os.rename(final, old)
    os.rename(staging, final)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
