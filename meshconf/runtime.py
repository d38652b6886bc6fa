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
