"""Resumable dataset jobs: results are written per batch as chunk files, atomically, and merged in row order.

A chunk is an `.npz` holding `index` (the dataset rows it covers) and arrays with one entry per row. A restart skips
the rows any chunk already holds, so an interrupt loses at most the batch in flight, and the merged result does not
depend on where the run stopped or on the batch size.
"""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Callable, Iterable

import numpy as np

from ..errors import MeshconfError
from .fileio import FolderLock, clean_leftovers, npz_bytes, parse_json, sha256_bytes, sha256_file, write_atomic


class ChunkStore:
    """One job's chunk folder. Guarantees (tested in tests/test_faults.py):

    * settings: `bind` ties the folder to everything that changes the results (model files' SHA-256, numerics,
      precision, device class, job options); a resumed run with other settings is refused, and every chunk carries
      the hash of the settings it was made with, so chunks are never reused under settings they were not made with,
      even if `settings.json` was deleted;
    * integrity: each chunk has a sidecar (`<chunk>.json`, written after the chunk) with its SHA-256; a chunk that is
      truncated, altered, unreadable, misshapen or has no sidecar is reported in one line, moved to `damaged/` and
      its rows are computed again;
    * exclusivity: `lock()` holds an flock while a process works here; a second process is refused with the pid;
    * completeness: `merged(keys, rows)` returns exactly the requested rows, each once, or raises.
    """

    def __init__(self, folder: str, log: Callable[[str], None] | None = None):
        self.folder = folder
        self.settings_sha: str | None = None
        self.log = log or _note
        self._verified: dict[str, tuple] = {}  # path -> (stat key, rows, signature)

    # ------------------------------------------------------------------------------------------------ settings
    def bind(self, settings: dict) -> None:
        """Tie the folder to one run's settings, so a resumed run cannot mix in chunks made differently."""
        path = os.path.join(self.folder, "settings.json")
        clean_leftovers(self.folder)
        clean_leftovers(os.path.dirname(os.path.abspath(self.folder)))  # the arrays' folder beside it
        settings = json.loads(json.dumps(settings, sort_keys=True))  # the form it takes on disk
        self.settings_sha = sha256_bytes(json.dumps(settings, sort_keys=True).encode())
        if os.path.isfile(path):
            try:
                with open(path) as fh:
                    saved = parse_json(fh)
            except (OSError, ValueError):
                saved = None
            if saved != settings:
                if not isinstance(saved, dict):
                    raise MeshconfError(f"{path} is unreadable; the chunks beside it cannot be checked. Delete "
                                        f"{self.folder} to start this work over")
                changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
                raise MeshconfError(f"{self.folder} holds work done with other settings ({', '.join(changed)}); "
                                    "repeat that run's command to resume it, or use another --out")
            return
        foreign = [os.path.basename(p) for p in self._files() if self._sidecar(p).get("settings") != self.settings_sha]
        if foreign:
            raise MeshconfError(f"{self.folder} has no settings.json but holds {len(foreign)} chunk(s) not made with "
                                f"these settings (e.g. {foreign[0]}); they cannot be reused. Repeat the command that "
                                f"made them, or delete {self.folder} to start over")
        os.makedirs(self.folder, exist_ok=True)
        write_atomic(path, json.dumps(settings, indent=1, sort_keys=True).encode())

    def lock(self, rank: int = 0) -> FolderLock:
        """Exclusive while a run works here. Under torchrun each rank takes its own lock; every run has a rank 0,
        so two runs on one folder always collide there."""
        return FolderLock(self.folder, f".lock.{rank}", "chunk folder")

    # ------------------------------------------------------------------------------------------------ chunks
    def _files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.folder, "chunk_*.npz")))

    @staticmethod
    def _sidecar(path: str) -> dict:
        try:
            with open(path[:-len(".npz")] + ".json") as fh:
                side = parse_json(fh)
            return side if isinstance(side, dict) else {}
        except (OSError, ValueError):
            return {}

    def _inspect(self, path: str) -> tuple[np.ndarray, tuple]:
        """(rows, shape signature) of a chunk that passes its checks; raises ValueError naming what failed."""
        side = self._sidecar(path)
        if not side:
            raise ValueError("no checksum sidecar")
        if self.settings_sha is not None and side.get("settings") != self.settings_sha:
            raise ValueError("made with other settings")
        if sha256_file(path) != side.get("sha256"):
            raise ValueError("checksum mismatch (truncated or altered)")
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {k: npz[k] for k in npz.files}
        except Exception as exc:  # zipfile/EOF/format errors of any kind mean the same: unusable
            raise ValueError(f"unreadable ({type(exc).__name__})") from None
        index = arrays.get("index")
        if index is None or index.ndim != 1 or not np.issubdtype(index.dtype, np.integer) or not len(index):
            raise ValueError("no valid row index")
        if any(len(v) != len(index) for v in arrays.values() if v.ndim) or any(not v.ndim for v in arrays.values()):
            raise ValueError("arrays of different lengths")
        signature = tuple(sorted((k, v.dtype.str, v.shape[1:]) for k, v in arrays.items()))
        return index.astype(np.int64), signature

    def _move_aside(self, path: str, why: str) -> None:
        damaged = os.path.join(self.folder, "damaged")
        os.makedirs(damaged, exist_ok=True)
        for p in (path, path[:-len(".npz")] + ".json"):
            if os.path.exists(p):
                os.replace(p, os.path.join(damaged, os.path.basename(p)))
        self._verified.pop(path, None)
        self.log(f"note: {os.path.basename(path)} in {self.folder} is damaged ({why}); moved to {damaged}/, its "
                 f"rows will be computed again")

    def verified(self) -> dict[str, np.ndarray]:
        """Chunk path -> its rows, for the chunks that pass every check; the others are moved aside."""
        found: dict[str, tuple] = {}
        for path in self._files():
            stat = os.stat(path)
            key = (stat.st_size, stat.st_mtime_ns)
            cached = self._verified.get(path)
            if cached and cached[0] == key:
                found[path] = cached
                continue
            try:
                rows, signature = self._inspect(path)
            except ValueError as exc:
                self._move_aside(path, str(exc))
                continue
            found[path] = self._verified[path] = (key, rows, signature)
        if found:  # a well-formed chunk unlike the others (another array width) is damaged too
            signatures = [v[2] for v in found.values()]
            common = max(set(signatures), key=signatures.count)
            for path in [p for p, v in found.items() if v[2] != common]:
                self._move_aside(path, "arrays of another shape than the other chunks")
                del found[path]
        return {p: v[1] for p, v in found.items()}

    def done(self) -> set[int]:
        return {int(i) for rows in self.verified().values() for i in rows}

    def write(self, arrays: dict[str, np.ndarray]) -> None:
        """The sidecar first, then the chunk (atomically): a chunk another process sees already has its checksum,
        so torchrun ranks sharing a folder never take each other's fresh chunk for a damaged one. A crash in between
        leaves a sidecar without a chunk, which nothing reads; a chunk without a sidecar is never trusted."""
        os.makedirs(self.folder, exist_ok=True)
        data = npz_bytes(arrays)
        name = f"chunk_{int(arrays['index'][0]):09d}"
        write_atomic(os.path.join(self.folder, name + ".json"),
                     json.dumps({"sha256": sha256_bytes(data), "settings": self.settings_sha,
                                 "rows": int(len(arrays["index"]))}).encode())
        write_atomic(os.path.join(self.folder, name + ".npz"), data)

    def merged(self, keys, rows=None) -> dict[str, np.ndarray]:
        """Every verified chunk's arrays concatenated in row order. With `rows`, exactly those rows, each once
        (other rows in the folder, e.g. another torchrun rank's, are left out); anything else raises."""
        parts: dict[str, list] = {k: [] for k in ("index", *keys)}
        for path in self.verified():
            with np.load(path, allow_pickle=False) as npz:
                for key in parts:
                    if key not in npz.files:
                        raise MeshconfError(f"{path} lacks the array '{key}'; delete {self.folder} and run again")
                    parts[key].append(npz[key])
        if not parts["index"]:
            merged = {k: np.zeros((0,)) for k in parts}
            merged["index"] = np.zeros(0, np.int64)
        else:
            merged = {k: np.concatenate(v) for k, v in parts.items()}
        if rows is not None:
            wanted = np.asarray(sorted(int(r) for r in rows), np.int64)
            keep = np.isin(merged["index"], wanted)
            merged = {k: v[keep] for k, v in merged.items()}
        order = np.argsort(merged["index"], kind="stable")
        merged = {k: v[order] for k, v in merged.items()}
        index = merged["index"]
        if len(np.unique(index)) != len(index):
            raise MeshconfError(f"{self.folder} holds some rows more than once (two runs wrote here at once?); "
                                f"delete it and run again")
        if rows is not None and not np.array_equal(index, wanted):
            raise MeshconfError(f"{self.folder} lacks {len(np.setdiff1d(wanted, index))} of the requested rows; "
                                f"run the same command again to compute them")
        return merged


def _note(message: str) -> None:
    from tqdm import tqdm

    tqdm.write(message, file=sys.stderr)


# Bumped whenever a change in meshconf alters the numbers a job stores (kernels, decoding, ED): chunks made by
# other numerics are not mixed with new ones.
NUMERICS_VERSION = 1


def model_settings(files: dict[str, str], precision: str = "float32", device: str = "cpu") -> dict:
    """What besides the options decides a job's numbers: each model file's SHA-256, the numerics version, the
    precision and the device class (cpu/cuda: kernels differ in the last bits)."""
    from .fileio import file_fingerprint

    import torch

    kind = str(device).split(":")[0]
    settings = {"sha256": {name: file_fingerprint(path) for name, path in sorted(files.items())},
                "numerics": NUMERICS_VERSION, "precision": precision, "device": kind}
    if kind == "cpu":  # CPU kernels split their sums by thread: another count moves results by ~1e-6
        settings["threads"] = torch.get_num_threads()
    return settings


def run_chunked(dataset, store: ChunkStore, process: Callable[[dict], dict], batch_size: int, desc: str,
                collate: Callable[[list], dict], max_batches: int | None = None, progress: bool = True, rows=None,
                workers: int = 0, stream: Callable[[Iterable[dict]], Iterable[tuple[dict, dict]]] | None = None
                ) -> bool:
    """Run `process` on collated batches of the rows not done yet (of `rows`, default all) and store each result.
    `collate` turns a list of dataset items into one batch dict. `workers` > 0 reads and crops images in that many
    background processes (worth it on a GPU, where reading JPEGs would otherwise be the bottleneck), into pinned
    memory when a GPU takes the batches. `stream`, if given, replaces the plain loop: it takes the batches and
    yields (batch, result) pairs in order (the engine's pipelined runner). Returns whether every row is done."""
    import torch
    from tqdm import tqdm

    rows = range(len(dataset)) if rows is None else rows
    check_images(store, dataset)
    done = store.done()
    todo = [i for i in rows if i not in done]
    batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)][:max_batches]
    if workers > 0 and batches:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers,
                                             pin_memory=torch.cuda.is_available())
    else:
        loader = (collate([dataset[i] for i in batch]) for batch in batches)
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc, unit="img", disable=None if progress else True) as bar:
        pairs = stream(loader) if stream is not None else ((batch, process(batch)) for batch in loader)
        for batch, result in pairs:
            if "image_sha" in batch:  # each row's image content, hashed as it was read
                result = {**result, "image_sha": np.asarray(batch["image_sha"], dtype="<U16")}
            store.write(result)
            bar.update(len(batch["index"]))
    done = store.done()
    return all(i in done for i in rows)


def check_images(store: ChunkStore, dataset) -> None:
    """On resume, the images must still be the ones the stored rows were computed from: the first row of every
    chunk has its image hashed again and compared with the hash stored when it was read (one file read per chunk;
    a folder of other images under the same names is refused in one line)."""
    if not hasattr(dataset, "image_digest"):
        return
    for path, chunk_rows in store.verified().items():
        with np.load(path, allow_pickle=False) as npz:
            stored = npz["image_sha"] if "image_sha" in npz.files else None
        row = int(chunk_rows[0])
        if stored is None or row >= len(dataset):
            continue
        try:
            now = dataset.image_digest(row)
        except OSError:
            now = None
        if now != str(stored[0]):
            raise MeshconfError(f"{store.folder} holds rows computed from other images: row {row}'s image "
                                f"{dataset.image_path(row)} is not the file it was computed from. Point --images at "
                                f"the folder of that run, or use another --out to start over")


def distributed() -> tuple[int, int]:
    """(rank, world size): under `torchrun` the process group is joined (NCCL on GPUs, else gloo)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    import torch
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank(), dist.get_world_size()


def finish(world: int) -> None:
    """Under torchrun: wait for every rank, then leave the process group. A rank that exits while rank 0 still
    writes the results would otherwise abort in gloo's background thread ("terminate called ...")."""
    if world <= 1:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


def shard(n: int, rank: int, world: int, rows=None) -> list[int]:
    """The rows this process works on: every world-th, starting at its rank (of `rows`, default all n)."""
    rows = list(range(n)) if rows is None else list(rows)
    return rows[rank::world]


def collect(store: ChunkStore, keys, rows: list[int], finished: bool, rank: int = 0,
            world: int = 1) -> tuple[bool, dict[str, np.ndarray] | None]:
    """(whether every process finished, every row's arrays merged in row order on rank 0 and None elsewhere).
    Each process sends its own rows, so the chunk folders need not be shared."""
    def own() -> dict[str, np.ndarray]:
        return store.merged(keys, rows)

    if world == 1:
        return finished, (own() if finished else None)
    import torch.distributed as dist

    shards = [None] * world if rank == 0 else None
    dist.gather_object(own() if finished else None, shards, dst=0)
    complete = [rank == 0 and all(s is not None for s in shards)]
    dist.broadcast_object_list(complete, src=0)
    if not complete[0] or rank != 0:
        return complete[0], None
    order = np.argsort(np.concatenate([s["index"] for s in shards]), kind="stable")
    return True, {k: np.concatenate([s[k] for s in shards])[order] for k in ("index", *keys)}
