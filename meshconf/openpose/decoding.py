"""From raw network maps to pytorch-openpose's (candidate, subset), exactly (REFERENCE.md E.2-E.7).

Stages: upsample the maps to image resolution with OpenCV's cubic resize (as the reference does, so the values are
the reference's), find heatmap peaks (`peaks`), score and pick limb connections (`limbs`), assemble people
(`assembly`). Peaks and limbs are tensor code and run where the maps are (CPU or GPU); the upsampling is OpenCV's.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np
import torch

from .. import constants as C
from ..errors import MeshconfError
from . import cvthreads
from .assembly import assemble
from .limbs import connect
from .network import NUM_HEATMAP, NUM_PAF
from .peaks import RADIUS, band_matrix, find_peaks
from .preprocess import NetGeometry, geometry


@dataclass
class Decoded:
    """The reference's outputs plus the intermediates the goldens record."""

    candidate: np.ndarray  # (N,4) x, y, score, id; shape (0,) when there are no peaks at all (reference layout)
    subset: np.ndarray  # (M,20) 18 candidate ids or -1, total score, part count
    all_peaks: np.ndarray  # (N,5) x, y, score, id, part
    connection_all: np.ndarray  # (C,6) limb k, id A, id B, score, i, j
    special_k: list[int]  # limbs with no peaks at one end
    subset_before_delete: np.ndarray
    delete_idx: np.ndarray


@contextmanager
def _threads(get, set_, count: int):
    previous = get()
    set_(count)
    try:
        yield
    finally:
        set_(previous)


def single_threaded_torch(device: torch.device):
    """The decoder's tensor ops are small (a few MB); on the CPU one torch thread beside the upsampling worker beats
    two contending ones (A1: 10.5 against 12.5 ms on 2 cores). Switching costs about 50 us."""
    if device.type != "cpu":
        return nullcontext()
    return _threads(torch.get_num_threads, torch.set_num_threads, 1)


def upsample(net_maps: np.ndarray, geo: NetGeometry) -> np.ndarray:
    """(C,h,w) stride-8 maps -> (H,W,C) float32 at image resolution: x8 cubic, crop the padding, cubic to (W,H).

    The channel count must stay the reference's (19 or 38): OpenCV's results depend on it in the last bit.
    """
    maps = np.ascontiguousarray(np.asarray(net_maps, dtype=np.float32).transpose(1, 2, 0))
    height, width = geo.image_hw
    with cvthreads.shared_single_threaded():
        up = cv2.resize(maps, (0, 0), fx=C.OP_STRIDE, fy=C.OP_STRIDE, interpolation=cv2.INTER_CUBIC)
        up = up[: geo.input_hw[0] - geo.pad_down, : geo.input_hw[1] - geo.pad_right]
        out = cv2.resize(up, (width, height), interpolation=cv2.INTER_CUBIC)
    return out.reshape(height, width, maps.shape[2])


@lru_cache(maxsize=16)
def _axis_operator(n_low: int, n_input: int, pad: int, n_out: int) -> np.ndarray:
    """The (n_out, n_low) matrix of `upsample` along one axis, read off OpenCV itself: resizing an identity
    matrix along one axis only (the other axis' scale is 1, where the cubic kernel is exactly (0, 1, 0, 0))."""
    eye = np.eye(n_low, dtype=np.float32)
    step1 = cv2.resize(eye, (0, 0), fx=1, fy=C.OP_STRIDE, interpolation=cv2.INTER_CUBIC)[: n_input - pad]
    return cv2.resize(step1, (n_low, n_out), interpolation=cv2.INTER_CUBIC).astype(np.float64)


@lru_cache(maxsize=16)
def smoothing_operators(geo: NetGeometry) -> tuple[np.ndarray, np.ndarray]:
    """(H,h) and (W,w) float64 matrices: Gaussian smoothing after upsampling, both linear and separable."""
    (height, width), (h, w) = geo.image_hw, geo.output_hw
    ky = band_matrix(height).numpy() @ _axis_operator(h, geo.input_hw[0], geo.pad_down, height)
    kx = band_matrix(width).numpy() @ _axis_operator(w, geo.input_hw[1], geo.pad_right, width)
    return ky, kx


def approximate_smoothing(low: torch.Tensor, geo: NetGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """The smoothed full-resolution heatmaps straight from the (P,h,w) network maps, Ky @ m @ Kx^T in float64
    (under a millisecond), and a bound of max|upsampled map| per channel for the error budget.

    It differs from scipy-on-OpenCV's-float32-upsampling only by OpenCV's float32 rounding (observed 1e-7 of
    max|m|). Cubic resizing multiplies magnitudes by at most 1.375^2 per 2-D resize (the a=-0.75 kernel's absolute
    sum at its worst phase), so 4 max|m| bounds the upsampled maps without a pass over them.
    """
    if min(geo.image_hw) <= RADIUS:  # too small for the fast path anyway (find_peaks uses scipy there)
        return None, None
    ky, kx = (torch.from_numpy(k).to(low.device) for k in smoothing_operators(geo))
    smoothed = (ky @ low.double() @ kx.T).float()
    bound = 4.0 * low.abs().flatten(1).amax(1) if low.numel() else torch.zeros(low.shape[0])
    return smoothed, bound


def _as_maps(array, channels: int, name: str) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    array = np.asarray(array)
    if array.ndim == 4 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 3 or array.shape[0] != channels:
        raise MeshconfError(f"{name} must have shape (1,{channels},h,w) or ({channels},h,w), got {array.shape}")
    return array


@lru_cache(maxsize=1)
def _worker() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshconf-upsample")


def decode_full(net_paf, net_heatmap, image_hw, device=None) -> Decoded:
    """`decode` with the intermediates. `device` (default: CPU) is where peaks and limbs are computed."""
    paf_net = _as_maps(net_paf, NUM_PAF, "net_paf")
    heat_net = _as_maps(net_heatmap, NUM_HEATMAP, "net_heatmap")
    geo = geometry(image_hw)
    for name, maps in (("net_paf", paf_net), ("net_heatmap", heat_net)):
        if maps.shape[1:] != geo.output_hw:
            raise MeshconfError(f"{name} is {maps.shape[1]}x{maps.shape[2]}, but the network output for a "
                                f"{geo.image_hw[0]}x{geo.image_hw[1]} image is {geo.output_hw[0]}x{geo.output_hw[1]}")
    device = torch.device(device or "cpu")
    # The PAF upsampling (the largest single step) runs in a worker thread, where OpenCV releases the GIL, while
    # this thread upsamples the heatmap and finds its peaks.
    paf_job = _worker().submit(upsample, paf_net, geo)
    parts = C.NUM_COCO  # channel 18 (background) is never searched
    with single_threaded_torch(device):
        heatmap = torch.from_numpy(upsample(heat_net, geo)).to(device)
        low = torch.from_numpy(np.ascontiguousarray(heat_net[:parts], dtype=np.float32)).to(device)
        smoothed, bound = approximate_smoothing(low, geo)
        part, row, col = find_peaks(heatmap, parts, smoothed, bound)
        score = heatmap[row, col, part].double()
    paf = torch.from_numpy(paf_job.result()).to(device)
    # Limb scoring is the big tensor job when a scene has hundreds of peaks: all threads.
    connection_all, special = connect(part, col, row, paf, geo.image_hw[0], parts)

    ids = np.arange(part.numel(), dtype=np.float64)
    all_peaks = np.stack([col.cpu().double().numpy(), row.cpu().double().numpy(), score.cpu().numpy(), ids,
                          part.cpu().double().numpy()], 1)
    connection_all = connection_all.cpu().numpy()
    subset, before, deleted = assemble(connection_all, all_peaks[:, 2])
    candidate = all_peaks[:, :4].copy() if len(all_peaks) else np.zeros((0,))
    return Decoded(candidate, subset, all_peaks, connection_all, special, before, deleted)


def decode(net_paf, net_heatmap, image_hw) -> tuple[np.ndarray, np.ndarray]:
    """(candidate (N,4), subset (M,20)) from the raw network outputs for the standard preprocessing of an image of
    `image_hw` = (H, W): net_paf (1,38,h,w), net_heatmap (1,19,h,w). Identical to pytorch-openpose's `Body`."""
    out = decode_full(net_paf, net_heatmap, image_hw)
    return out.candidate, out.subset
