"""The pipelined runner: a job's batches go through two stages, and the stages of neighbouring batches overlap.

`launch` queues the device work of one batch (SPIN + SMPL, OpenPose's forward) and returns without waiting for it;
`finish` does what needs the results on the host (decoding the heatmaps, ED, the rows). Run one after the other, a
GPU waits while the CPU decodes and the CPU waits while the GPU runs the networks. `pipelined` launches batch k + 1
on the calling thread while a worker thread finishes batch k, so the slower of the two sets the pace; with the
reading and cropping in `DataLoader` workers and the chunk writing on the calling thread between launches, every
stage of a job overlaps.

Results come out in input order and equal the serial run's bit for bit: a batch's numbers depend only on that batch,
never on what ran beside it.

On a GPU the finishing thread works on a stream of its own. On the one default stream, every point where decoding
waits for the device (a copy to the host, `nonzero`, `.item()`; the decoder has dozens a batch) would wait for the
next batch's networks too, queued there meanwhile, so the decoding of batch k could not end before the forward of
batch k + 1. The finishing stream starts a batch only after an event recorded behind its launch, and is drained
before the batch's tensors are released, so no memory is reused while a kernel may still read it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import torch


@dataclass(frozen=True)
class Stages:
    """The two halves of one batch's work. `launch(item)` runs on the calling thread (device work queued, host
    copies left for later); `finish(launched)` may run on a worker thread."""

    launch: Callable[[Any], Any]
    finish: Callable[[Any], Any]

    def __call__(self, item):
        """Both stages at once: the serial run of one item."""
        return self.finish(self.launch(item))


def default_depth(device) -> int:
    """How many batches may be finishing while the next launches: 1 on every device. On a GPU the two stages use
    different hardware; on the CPU they share the cores, yet extract measured 3-4% faster pipelined than serial
    (AMD EPYC Zen 4, 2 cores, fp32 and bf16, every pipelined round faster than every serial one:
    benchmarks/runner.py), since the decoder's single-threaded stretches leave a core free."""
    return 1 if torch.device(device).type in ("cuda", "cpu") else 0


def default_workers(device) -> int:
    """Image-reading processes when the user chose none: on a GPU half the cores, at most 8 (one process reads and
    crops about 700-800 crops/s, below what the networks take there); on the CPU none (the networks take 2-7
    crops/s, reading in the main process costs nothing worth a process)."""
    import os

    return min(8, (os.cpu_count() or 1) // 2) if torch.device(device).type == "cuda" else 0


# Whether a GPU's finishing thread uses its own stream (see the module's docstring); benchmarks/gpu.py switches it
# off to measure the difference.
SEPARATE_STREAM = True


@dataclass(frozen=True)
class _Queued:
    """A launched batch on its way to a finishing stream: it may start once `ready` has passed on the device."""

    launched: Any
    ready: Any  # torch.cuda.Event


@lru_cache(maxsize=None)
def _finishing_stream(device: torch.device):
    return torch.cuda.Stream(device=device)


def _finish(finish: Callable, launched, stream=None):
    # inference mode is per thread: the worker must enter it too, or decoding would record autograd history
    with torch.inference_mode():
        if stream is None:
            return finish(launched)
        stream.wait_event(launched.ready)
        try:
            with torch.cuda.stream(stream):
                return finish(launched.launched)
        finally:
            stream.synchronize()  # nothing of this batch still runs when the caller lets go of its tensors


def pipelined(items: Iterable, stages: Stages, depth: int = 0, device=None) -> Iterator[tuple[Any, Any]]:
    """(item, finish(launch(item))) for each item, in order. With `depth` > 0, up to `depth` items finish on a worker
    thread while the next ones launch; with a CUDA `device`, on a stream of their own. An error in either stage is
    raised here, after the items already finished were yielded; stopping early (an error in the caller, Ctrl-C)
    waits for the worker before returning."""
    if depth <= 0:
        for item in items:
            yield item, stages(item)
        return
    device = torch.device(device) if device is not None else None
    stream = None
    if SEPARATE_STREAM and device is not None and device.type == "cuda":
        device = torch.device("cuda", device.index if device.index is not None else torch.cuda.current_device())
        stream = _finishing_stream(device)
    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshconf-finish")
    pending: deque = deque()
    try:
        for item in items:
            try:
                launched = stages.launch(item)
                if stream is not None:  # behind everything the launch queued on this thread's stream
                    launched = _Queued(launched, torch.cuda.current_stream(device).record_event())
            except BaseException:
                while pending:  # what was launched before is still worth keeping (a chunk written is not redone)
                    done, future = pending.popleft()
                    yield done, future.result()
                raise
            pending.append((item, pool.submit(_finish, stages.finish, launched, stream)))
            while len(pending) > depth:
                done, future = pending.popleft()
                yield done, future.result()
        while pending:
            done, future = pending.popleft()
            yield done, future.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
