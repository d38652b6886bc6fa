"""Heatmap peaks exactly as pytorch-openpose finds them, without filtering every map in float64.

The reference smooths each full-resolution map with `scipy.ndimage.gaussian_filter(sigma=3)` in float64 and keeps
pixels that are >= their 4 neighbours (outside = 0) and > 0.1. Which pixel wins a near-tie depends on the last bit
of scipy's sums, so an approximate filter alone would move a peak now and then.

Here an approximate smoothing (float32 or from the low-resolution maps, see `decode`) with a known error bound
`eps` decides every pixel whose decision is certain under that bound; the few uncertain ones (near-ties, values at
the 0.1 threshold) are recomputed at single pixels with scipy's own float64 arithmetic: the same weights, the same
order of operations (centre tap first, then symmetric pairs from the outermost in), so they equal scipy bit for
bit. Maps with non-finite values, tiny maps, or so many uncertain pixels that pointwise work would cost more
(plateaus) go to scipy itself. Everything else is torch ops, on the CPU or a GPU.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from .. import constants as C

RADIUS = int(4.0 * C.OP_GAUSS_SIGMA + 0.5)  # scipy's default truncate=4.0
# Error budget of an approximate smoothing, relative to a bound of max|map|. The approximations used stay below
# 1e-6 (float32 sums of 2 x 25 positive weights summing to 1: < 50 * 2^-24 = 3e-6 worst case; observed 1e-7).
REL_EPS = 1e-5
# Beyond this many uncertain pixels in a map, scipy's full filter is cheaper than the pointwise path.
MAX_POINTWISE = 4096


@lru_cache(maxsize=1)
def gaussian_weights() -> np.ndarray:
    """scipy's own (2R+1,) float64 kernel, read back by filtering a unit impulse (exact: 1*w + zeros)."""
    impulse = np.zeros(2 * RADIUS + 1)
    impulse[RADIUS] = 1.0
    return gaussian_filter1d(impulse, C.OP_GAUSS_SIGMA)


def _reflect(index: torch.Tensor, size: int) -> torch.Tensor:
    """scipy mode 'reflect' (edge sample repeated) for offsets within one length of the edge."""
    index = torch.where(index < 0, -index - 1, index)
    return torch.where(index >= size, 2 * size - 1 - index, index)


def _symmetric_sum(taps: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """scipy's symmetric correlate1d on the last axis of `taps` (..., 2R+1) -> (...): w0*x0, then += (x-j + x+j)*wj
    for j = R down to 1. Separate tensor ops, so no fused multiply-add changes a rounding."""
    out = taps[..., RADIUS] * weights[RADIUS]
    for j in range(RADIUS, 0, -1):
        out = out + (taps[..., RADIUS - j] + taps[..., RADIUS + j]) * weights[RADIUS + j]
    return out


def exact_smoothed_at(maps: torch.Tensor, row: torch.Tensor, col: torch.Tensor, part: torch.Tensor,
                      crop: torch.Tensor | None = None) -> torch.Tensor:
    """scipy's `gaussian_filter(maps[crop, :, :, part], 3)[row, col]` (float64, bit-exact) at a list of pixels.

    `maps` (H,W,P), or (B,H,W,P) with `crop` indices, float32 or float64 with H, W > RADIUS. The filter runs along
    rows (axis 0) first, then columns.
    """
    if crop is None:
        maps, crop = maps[None], torch.zeros_like(row)
    _, height, width, _ = maps.shape
    offsets = torch.arange(-RADIUS, RADIUS + 1, device=maps.device)
    rows = _reflect(row[:, None] + offsets, height)  # (Q, 25)
    cols = _reflect(col[:, None] + offsets, width)  # (Q, 25)
    # float32 -> float64 is exact, so gathering first and widening after gives the reference's float64 inputs
    window = maps[crop[:, None, None], rows[:, :, None], cols[:, None, :], part[:, None, None]].double()
    weights = torch.as_tensor(gaussian_weights(), device=maps.device)
    along_rows = _symmetric_sum(window.transpose(1, 2), weights)  # (Q, 25 cols)
    return _symmetric_sum(along_rows, weights)


def band_matrix(n: int, device=None) -> torch.Tensor:
    """scipy's 1-D Gaussian filter with 'reflect' borders as an (n, n) float64 matrix (n > RADIUS)."""
    offsets = torch.arange(-RADIUS, RADIUS + 1, device=device)
    cols = _reflect(torch.arange(n, device=device)[:, None] + offsets, n)
    rows = torch.arange(n, device=device)[:, None].expand_as(cols)
    weights = torch.as_tensor(gaussian_weights(), device=device)
    return torch.zeros(n, n, dtype=torch.float64, device=device).index_put_((rows, cols), weights.expand_as(cols),
                                                                            accumulate=True)


def smooth_approx(maps: torch.Tensor) -> torch.Tensor:
    """(P,H,W) float32 approximation of the smoothed (H,W,P) maps: banded matrix products in float32, where each
    output sums 2 x 25 nonzero terms (adding exact zeros is exact), so |error| < 1e-6 max|map| << REL_EPS."""
    height, width, _ = maps.shape
    by, bx = band_matrix(height, maps.device).float(), band_matrix(width, maps.device).float()
    return by @ maps.permute(2, 0, 1) @ bx.T


def reference_peak_mask(map64: np.ndarray) -> np.ndarray:
    """The reference's rule on one (H,W) float64 map with scipy's own filter: the fallback path and test oracle."""
    smoothed = gaussian_filter(map64, sigma=C.OP_GAUSS_SIGMA)
    padded = np.pad(smoothed, 1)
    return ((smoothed >= padded[:-2, 1:-1]) & (smoothed >= padded[2:, 1:-1]) & (smoothed >= padded[1:-1, :-2])
            & (smoothed >= padded[1:-1, 2:]) & (smoothed > C.OP_PEAK_THRESHOLD))


def find_peaks(maps, parts: int | None = None, smoothed=None, bound=None):
    """Peaks of the first `parts` channels of (H,W,P) float32 maps, as (part, row, col) index tensors in
    (part, row, col) order: the pixels the reference finds with scipy in float64.

    `smoothed` (>= parts, H, W) may give an approximation of the smoothed maps with error below REL_EPS * `bound`
    per channel (`decode` computes it cheaply from the low-resolution maps); by default both are computed here.
    """
    maps = torch.as_tensor(maps, dtype=torch.float32)
    height, width, channels = maps.shape
    parts = channels if parts is None else parts
    if bound is None:
        bound = maps.abs().amax((0, 1)) if maps.numel() else torch.zeros(channels)  # NaN/inf propagate
    bound = torch.as_tensor(bound, dtype=torch.float64, device=maps.device)[:parts]
    fast = torch.isfinite(bound)
    if min(height, width) <= RADIUS:  # a filter wider than the map reflects more than once: leave that to scipy
        fast[:] = False
    slow = set(torch.nonzero(~fast).flatten().tolist())
    found = []
    if fast.any():
        if smoothed is None:
            smoothed = smooth_approx(maps[:, :, :parts])
        eps = torch.where(fast, REL_EPS * bound, 0.0)
        found.append(_fast_peaks(maps, torch.as_tensor(smoothed[:parts], dtype=torch.float32), eps, slow))
    for p in sorted(slow):
        row, col = np.nonzero(reference_peak_mask(maps[:, :, p].cpu().double().numpy()))
        found.append(tuple(torch.as_tensor(v, device=maps.device) for v in (np.full(row.size, p), row, col)))
    if not found:
        empty = torch.zeros(0, dtype=torch.long, device=maps.device)
        return empty, empty, empty
    part, row, col = (torch.cat([f[i] for f in found]) for i in range(3))
    order = torch.argsort((part * height + row) * width + col)
    return part[order], row[order], col[order]


def _fast_peaks(maps: torch.Tensor, smoothed: torch.Tensor, eps: torch.Tensor, slow: set[int]):
    """Decide from the approximate smoothing where the error bound allows it, recompute exactly where it does not.
    Channels in `slow` are skipped; channels with too many uncertain pixels are added to it."""
    eps = eps.clone()
    if slow:
        eps[sorted(slow)] = float("nan")  # a NaN budget makes no pixel possible: the channel is skipped
    _, part, row, col, plateau = batch_peaks(maps[None], smoothed[None], eps[None])
    slow.update(torch.nonzero(plateau[0]).flatten().tolist())
    return part, row, col


def batch_peaks(maps: torch.Tensor, smoothed: torch.Tensor, eps: torch.Tensor):
    """Peaks of B crops at once: `maps` (B,H,W,C) float32, `smoothed` (B,P,H,W) approximately smoothed maps with
    error below `eps` (B,P) (NaN: skip that channel). Returns (crop, part, row, col) of the peaks decided here and
    a (B,P) mask of the channels with more than MAX_POINTWISE uncertain pixels, whose peaks are left out (plateaus:
    scipy's full filter is cheaper there). Only the uncertain pixels are computed exactly."""
    parts = smoothed.shape[1]
    padded = torch.nn.functional.pad(smoothed, (1, 1, 1, 1))  # neighbours outside the map count as 0
    highest = torch.maximum(torch.maximum(padded[:, :, :-2, 1:-1], padded[:, :, 2:, 1:-1]),
                            torch.maximum(padded[:, :, 1:-1, :-2], padded[:, :, 1:-1, 2:]))
    threshold = C.OP_PEAK_THRESHOLD
    e = eps.float()[:, :, None, None]
    possible = (smoothed > threshold - e) & (smoothed - highest >= -2 * e)
    crop, part, row, col = torch.nonzero(possible, as_tuple=True)
    value = smoothed[crop, part, row, col].double()
    margin = value - highest[crop, part, row, col].double()  # how far above its highest neighbour
    e = eps[crop, part].double()
    unsure = (value <= threshold + e) | (margin <= 2 * e)
    channel = crop * parts + part
    counts = torch.bincount(channel[unsure], minlength=eps.numel()).view(eps.shape)
    plateau = counts > MAX_POINTWISE
    keep = ~unsure & ~plateau[crop, part]
    unsure &= ~plateau[crop, part]
    if unsure.any():
        keep[unsure] = _exact_decision(maps, row[unsure], col[unsure], part[unsure], crop[unsure])
    return crop[keep], part[keep], row[keep], col[keep], plateau


def _exact_decision(maps: torch.Tensor, row, col, part, crop) -> torch.Tensor:
    """The reference rule at the given pixels, from exact smoothed values of each pixel and its 4 neighbours."""
    _, height, width, _ = maps.shape
    d_row = torch.tensor([0, -1, 1, 0, 0], device=maps.device)
    d_col = torch.tensor([0, 0, 0, -1, 1], device=maps.device)
    rows, cols = row[:, None] + d_row, col[:, None] + d_col  # (Q,5): the pixel, above, below, left, right
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    values = torch.zeros(rows.shape, dtype=torch.float64, device=maps.device)
    parts, crops = part[:, None].expand_as(rows), crop[:, None].expand_as(rows)
    values[inside] = exact_smoothed_at(maps, rows[inside], cols[inside], parts[inside], crops[inside])
    centre = values[:, 0]
    return (centre[:, None] >= values[:, 1:]).all(1) & (centre > C.OP_PEAK_THRESHOLD)
