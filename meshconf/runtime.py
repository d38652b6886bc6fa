"""Process-level performance settings, applied by the jobs and benchmarks (never on import).

On the small VMs this project targets, memory that a process frees goes back to the host within seconds, and
touching it again costs page faults (PERF-REFERENCE.md: about 1.9 s per GiB). glibc hands every large buffer
(> 128 KiB) back to the kernel on free, so a loop that allocates its working arrays anew each time (the decoder's
full-resolution maps, a batch's activations) pays those faults on every call: OpenPose decoding measured 18-19 ms
median with them and 12 ms without. Keeping freed memory inside the process trades a larger resident size for
steady speed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_applied = False


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed memory for reuse (no mmap per large buffer, no trimming). Returns whether it
    applied: False on other C libraries, where it does nothing."""
    global _applied
    if _applied:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    # 1 GiB: buffers up to that size come from the heap and are reused; the heap is never trimmed.
    ok = mallopt(_M_MMAP_THRESHOLD, 1 << 30) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    _applied = ok
    return ok


# ---------------------------------------------------------------------------------------------------- devices
PRECISIONS = ("float32", "bfloat16")


def torch_dtype(precision: str):
    import torch

    from .errors import MeshconfError

    if precision not in PRECISIONS:
        raise MeshconfError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return {"float32": torch.float32, "bfloat16": torch.bfloat16}[precision]


def resolve_device(spec: str | None = "auto"):
    """The one device policy. `auto`: this process's GPU (`cuda:$LOCAL_RANK`, so each torchrun rank has its own)
    when CUDA is available, else the CPU. Anything else is a torch device string, checked here in one line."""
    import os

    import torch

    from .errors import MeshconfError

    spec = spec or "auto"
    if spec == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        spec = f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    try:
        device = torch.device(spec)
    except (RuntimeError, ValueError):
        raise MeshconfError(f"--device {spec!r} is not a device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise MeshconfError(f"--device {spec}: this torch has no CUDA (or no GPU is visible); use --device cpu")
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index >= torch.cuda.device_count():
            raise MeshconfError(f"--device {spec}: only {torch.cuda.device_count()} GPU(s) visible")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise MeshconfError(f"--device {spec}: only cpu and cuda devices are supported")
    return device


def configure_torch(device, tf32: bool = False, fixed_shapes: bool = False, threads: int | None = None) -> None:
    """Backend switches, set once per job. TF32 stays off unless asked (with it, CUDA matmuls and convolutions
    round to 10 mantissa bits and results leave the goldens' tolerances); cuDNN's autotuner only where every
    batch has the same shape (datasets, sensitivity), where it pays."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    # The switches are process-wide: only a CUDA load sets them, so a later CPU load (a job's figure) cannot undo
    # the job's choice.
    if getattr(device, "type", str(device)) == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = bool(tf32)
        torch.backends.cudnn.allow_tf32 = bool(tf32)
        torch.backends.cudnn.benchmark = bool(fixed_shapes)


def synchronize(device) -> None:
    """Wait for the device before reading a clock (CUDA runs asynchronously)."""
    import torch

    if getattr(device, "type", str(device)).startswith("cuda"):
        torch.cuda.synchronize(device)



def peak_rss_mb() -> float:
    """This process's peak resident memory in MiB: its VmHWM. Not getrusage's ru_maxrss, which Linux carries over
    exec from the process that started this one, so a large parent (a test run's pytest) would count as ours."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def passive_openmp() -> bool:
    """OpenMP threads that sleep while they wait (OMP_WAIT_POLICY=PASSIVE) unless the user chose otherwise; only
    effective before torch starts its thread pool, so the CLI calls it first. Measured (benchmarks/threads.py, 2
    cores): beside a busy neighbour the estimator ran 2-4x faster than with spinning waits; alone 1.4x slower for
    the estimator's tree walks, and the networks' forwards no slower."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


def set_threads(threads: int | None) -> None:
    """`--threads` of a job without models to load (evaluate, calibrate): torch's intra-op threads."""
    if threads is None:
        return
    if threads < 1:
        from .errors import MeshconfError

        raise MeshconfError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def host_workers(device) -> int:
    """Processes for the per-crop Python work a batch leaves on the host (assembling people, ED): on a GPU host with
    at least 8 cores half of them, at most 8, since one thread would cap a GPU at a few hundred to a thousand crops
    a second (assembly 1-2 ms, ED + SE 0.75 ms a crop, recipe weights); on the CPU none (its cores run the networks)."""
    import torch

    cores = os.cpu_count() or 1
    return min(8, cores // 2) if torch.device(device).type == "cuda" and cores >= 8 else 0


def host_map(fn, jobs: list, workers: int = 0) -> list:
    """[fn(job) for job in jobs], here or in `workers` processes (the same numbers for a pure, module-level `fn`).
    Batches smaller than two jobs a worker stay here, where nothing needs to travel."""
    if workers < 2 or len(jobs) < 2 * workers:
        return [fn(job) for job in jobs]
    chunk = -(-len(jobs) // (4 * workers))
    return list(_host_pool(workers).map(fn, jobs, chunksize=chunk))


_POOLS: dict = {}


def _host_pool(workers: int):
    """Started once per size: "spawn", since forking a process that holds a CUDA context is unsafe."""
    if workers not in _POOLS:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _POOLS[workers] = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
    return _POOLS[workers]
