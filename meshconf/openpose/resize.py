"""OpenCV's float32 cubic resize (`cv2.resize(..., INTER_CUBIC)`) as tensor ops, bit for bit, for a whole batch.

The decoder's numbers are the reference's only if the upsampled maps are OpenCV's to the last bit. OpenCV resizes a
float32 (H,W,C) image in two passes, each a 4-tap sum with float32 weights:
* horizontally, per source row: ((s0 a0 + s1 a1) + s2 a2) + s3 a3, taps clamped at the borders;
* vertically, per output element of the row laid out as W*C floats: SIMD lanes of 4 compute
  s0 b0 + (s1 b1 + (s2 b2 + s3 b3)) (nested multiply-adds, no FMA in the SSE baseline), and the last (W*C mod 4)
  elements of a row, done by the scalar tail, compute ((s0 b0 + s1 b1) + s2 b2) + s3 b3.
The weights are OpenCV's `interpolateCubic` (A = -0.75) evaluated in float32. Every product and sum here is its own
tensor op, so no fused multiply-add changes a rounding on any device; do not torch.compile this module.
`tests/test_openpose.py` checks the result against cv2.resize bit for bit on random maps of many shapes.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from .. import constants as C

LANES = 4  # OpenCV's baseline SIMD width for float32 (128-bit)


@lru_cache(maxsize=32)
def cubic_taps(n_in: int, n_out: int, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """((n_out, 4) source indices, (n_out, 4) float32 weights) of one axis. `scale` is the `fx`/`fy` OpenCV was
    given; without it, OpenCV's own n_out / n_in."""
    inverse = float(scale) if scale is not None else n_out / n_in
    step = 1.0 / inverse
    position = ((np.arange(n_out) + 0.5) * step - 0.5).astype(np.float32)
    start = np.floor(position).astype(np.int64)
    x = (position - start.astype(np.float32)).astype(np.float32)
    f = np.float32
    a, one = f(-0.75), f(1)
    x1 = x + one
    w0 = ((a * x1 - f(5) * a) * x1 + f(8) * a) * x1 - f(4) * a
    w1 = ((a + f(2)) * x - (a + f(3))) * x * x + one
    rest = one - x
    w2 = ((a + f(2)) * rest - (a + f(3))) * rest * rest + one
    w3 = one - w0 - w1 - w2
    index = np.clip(start[:, None] + np.arange(-1, 3), 0, n_in - 1)
    return index, np.stack([w0, w1, w2, w3], 1).astype(np.float32)


def _taps(n_in, n_out, scale, device):
    index, weight = cubic_taps(n_in, n_out, scale)
    return torch.from_numpy(index).to(device), torch.from_numpy(weight).to(device)


def resize_cubic(maps: torch.Tensor, out_hw: tuple[int, int], scale: float | None = None,
                 row_width: int | None = None) -> torch.Tensor:
    """`cv2.resize(maps[b], (W, H) or fx=fy=scale, INTER_CUBIC)` for (B,h,w,C) float32 maps -> (B,H,W,C).

    `row_width` is the element count of one row of the image OpenCV resized (W x its channel count), when `maps`
    holds only some of its channels (the last ones dropped): which elements fall in the scalar tail depends on it.
    """
    batch, h, w, channels = maps.shape
    height, width = out_hw
    if (height, width) == (h, w):  # OpenCV copies
        return maps.clone()
    device = maps.device
    index_x, weight_x = _taps(w, width, scale, device)
    index_y, weight_y = _taps(h, height, scale, device)
    # horizontal pass on every source row: (B,h,W,C)
    wx = weight_x[None, None, :, :, None]
    rows = maps.index_select(2, index_x[:, 0]) * wx[:, :, :, 0]
    for j in range(1, 4):
        rows = rows + maps.index_select(2, index_x[:, j]) * wx[:, :, :, j]
    # vertical pass: terms t_j (B,H,W,C), summed in the SIMD order, then the scalar tail fixed up
    wy = weight_y[None, :, None, None, :]
    terms = [rows.index_select(1, index_y[:, j]) * wy[..., j] for j in range(4)]
    out = terms[0] + (terms[1] + (terms[2] + terms[3]))
    row_width = row_width or width * channels
    first_tail = (row_width // LANES) * LANES  # flat index within a W*C row where the scalar tail begins
    if first_tail < row_width:
        flat = out.view(batch, height, width * channels)
        elements = torch.arange(width * channels, device=device)
        full_channels = row_width // width
        tail = (elements // channels) * full_channels + elements % channels >= first_tail
        if tail.any():
            picked = [t.reshape(batch, height, -1)[:, :, tail] for t in terms]
            flat[:, :, tail] = ((picked[0] + picked[1]) + picked[2]) + picked[3]
    return out


def upsample_batch(net_maps: torch.Tensor, geo, channels: int | None = None) -> torch.Tensor:
    """The decoder's upsampling (x8 cubic, crop the padding, cubic to the image size) of (B,C,h,w) network maps,
    for the first `channels` of them, -> (B,H,W,channels) float32 on the maps' device, equal to OpenCV's."""
    total = net_maps.shape[1]
    channels = channels or total
    maps = net_maps[:, :channels].float().permute(0, 2, 3, 1).contiguous()
    h, w = maps.shape[1:3]
    up = resize_cubic(maps, (h * C.OP_STRIDE, w * C.OP_STRIDE), scale=C.OP_STRIDE,
                      row_width=w * C.OP_STRIDE * total)
    up = up[:, : geo.input_hw[0] - geo.pad_down, : geo.input_hw[1] - geo.pad_right]
    height, width = geo.image_hw
    return resize_cubic(up.contiguous(), (height, width), row_width=width * total)
