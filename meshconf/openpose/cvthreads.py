"""Who may use OpenCV's threads when: the network input's resize runs alone, the decoder's resizes run together.

OpenCV's cubic resize of 1-, 3- and 4-channel images (the network input) goes through Intel IPP, and IPP gives other
numbers at some pixels when it runs on one thread (one OpenCV thread, or called while another thread's resize
holds OpenCV's pool) than when it runs in parallel, as the reference ran it. Measured with OpenCV 5.0: 224x170 and
480x640 images differ by an ulp (float) or a step (uint8) at up to 0.0008% of values; 224x224 agreed. The
decoder's 19- and 38-channel resizes do not use IPP and agree in every mode, and run fastest on one OpenCV thread
beside torch (1.5x on 2 cores), but that thread count is a process-wide setting.

So the decoder's resizes share OpenCV on one thread (the first to enter sets it, the last to leave restores it,
however many threads overlap), and the network input's resize waits until none of them runs and holds OpenCV
alone, at the thread count the process started with.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2

_state = threading.Condition(threading.RLock())
_sharing = 0
_saved_threads: int | None = None


@contextmanager
def alone() -> Iterator[None]:
    """OpenCV to this thread alone, with its usual threads: for the IPP-backed resizes."""
    with _state:
        _state.wait_for(lambda: _sharing == 0)
        yield


@contextmanager
def shared_single_threaded() -> Iterator[None]:
    """OpenCV on one thread, shared with other threads doing the same: for resizes that agree in every mode."""
    global _sharing, _saved_threads
    with _state:
        if _sharing == 0:
            _saved_threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
        _sharing += 1
    try:
        yield
    finally:
        with _state:
            _sharing -= 1
            if _sharing == 0:
                cv2.setNumThreads(_saved_threads)
                _state.notify_all()
