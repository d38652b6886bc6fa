"""Resumable dataset jobs: results are written per batch as chunk files, atomically, and merged in row order.

A chunk is an `.npz` holding `index` (the dataset rows it covers) and arrays with one entry per row. A restart skips
the rows any chunk already holds, so an interrupt loses at most the batch in flight, and the merged result does not
depend on where the run stopped or on the batch size.
"""

from __future__ import annotations

import glob
import io
import json
import os
from typing import Callable

import numpy as np

from .errors import MeshconfError
from .imageio import write_atomic


class ChunkStore:
    def __init__(self, folder: str):
        self.folder = folder

    def bind(self, settings: dict) -> None:
        """Tie the folder to one run's settings, so a resumed run cannot mix in chunks made differently."""
        path = os.path.join(self.folder, "settings.json")
        settings = json.loads(json.dumps(settings))  # the form it takes on disk
        if os.path.isfile(path):
            with open(path) as fh:
                saved = json.load(fh)
            if saved != settings:
                changed = sorted(k for k in set(saved) | set(settings) if saved.get(k) != settings.get(k))
                raise MeshconfError(f"{self.folder} holds work done with other settings ({', '.join(changed)}); "
                                    "repeat that run's command to resume it, or use another --out/--name")
            return
        os.makedirs(self.folder, exist_ok=True)
        write_atomic(path, json.dumps(settings, indent=1).encode())

    def _files(self) -> list[str]:
        return sorted(glob.glob(os.path.join(self.folder, "chunk_*.npz")))

    def done(self) -> set[int]:
        rows: set[int] = set()
        for path in self._files():
            with np.load(path, allow_pickle=False) as npz:
                rows.update(int(i) for i in npz["index"])
        return rows

    def write(self, arrays: dict[str, np.ndarray]) -> None:
        os.makedirs(self.folder, exist_ok=True)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        write_atomic(os.path.join(self.folder, f"chunk_{int(arrays['index'][0]):09d}.npz"), buffer.getvalue())

    def merged(self, keys) -> dict[str, np.ndarray]:
        """Every chunk's arrays concatenated and put in row order."""
        parts: dict[str, list] = {k: [] for k in ("index", *keys)}
        for path in self._files():
            with np.load(path, allow_pickle=False) as npz:
                for key in parts:
                    parts[key].append(npz[key])
        order = np.argsort(np.concatenate(parts["index"]), kind="stable")
        return {key: np.concatenate(values)[order] for key, values in parts.items()}


def run_chunked(dataset, store: ChunkStore, process: Callable[[dict], dict], batch_size: int, desc: str,
                max_batches: int | None = None, progress: bool = True, rows=None, workers: int = 0) -> bool:
    """Run `process` on collated batches of the rows not done yet (of `rows`, default all) and store each result.
    `workers` > 0 reads and crops images in that many background processes (worth it on a GPU, where reading
    JPEGs would otherwise be the bottleneck). Returns whether every row is done."""
    import torch
    from tqdm import tqdm

    from .dataset.crops import collate

    rows = range(len(dataset)) if rows is None else rows
    done = store.done()
    todo = [i for i in rows if i not in done]
    batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)][:max_batches]
    if workers > 0 and batches:
        loader = torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate, num_workers=workers)
    else:
        loader = (collate([dataset[i] for i in batch]) for batch in batches)
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc=desc, unit="img", disable=not progress) as bar:
        for batch in loader:
            store.write(process(batch))
            bar.update(len(batch["index"]))
    done = store.done()
    return all(i in done for i in rows)


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


def local_device() -> str:
    """This process's device: its own GPU under torchrun (LOCAL_RANK), else the first GPU, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return "cpu"
    device = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    torch.cuda.set_device(device)
    return device


def shard(n: int, rank: int, world: int, rows=None) -> list[int]:
    """The rows this process works on: every world-th, starting at its rank (of `rows`, default all n)."""
    rows = list(range(n)) if rows is None else list(rows)
    return rows[rank::world]


def collect(store: ChunkStore, keys, rows: list[int], finished: bool, rank: int = 0,
            world: int = 1) -> tuple[bool, dict[str, np.ndarray] | None]:
    """(whether every process finished, every row's arrays merged in row order on rank 0 and None elsewhere).
    Each process sends its own rows, so the chunk folders need not be shared."""
    def own() -> dict[str, np.ndarray]:
        merged = store.merged(keys)
        mine = np.isin(merged["index"], rows)
        return {k: v[mine] for k, v in merged.items()}

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
