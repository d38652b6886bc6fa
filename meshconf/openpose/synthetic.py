"""Synthetic network outputs with known people: for tests, benchmarks and trying the decoder without weights."""

from __future__ import annotations

import numpy as np

from .. import constants as C
from .preprocess import geometry


def synthetic_maps(rng: np.random.Generator, image_hw, n_people: int, noise: float = 0.0):
    """(paf (1,38,h,w), heatmap (1,19,h,w)) float32 network-resolution maps for random people in an image of
    `image_hw`: Gaussian parts (sigma 1 cell), PAF unit vectors in bands of half-width 0.9 cells, background =
    1 - max, about 15% of parts absent, optional Gaussian noise (the decode goldens were built along these lines)."""
    geo = geometry(image_hw)
    h, w = geo.output_hw
    heat = np.zeros((19, h, w), np.float32)
    paf = np.zeros((38, h, w), np.float32)
    yy, xx = np.mgrid[0:h, 0:w]
    scale = geo.scaled_hw[0] / image_hw[0] / 8  # image px -> output cells
    for _ in range(n_people):
        centre = rng.uniform([0.2 * image_hw[1], 0.2 * image_hw[0]], [0.8 * image_hw[1], 0.8 * image_hw[0]])
        joints = centre + rng.normal(0, 0.15 * min(image_hw), (18, 2))
        present = rng.random(18) > 0.15
        for p in range(18):
            if present[p]:
                cx, cy = joints[p] * scale
                heat[p] = np.maximum(heat[p], rng.uniform(0.5, 1) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / 2))
        for k, (a, b) in enumerate(C.OP_LIMBS):
            if present[a] and present[b]:
                pa, pb = joints[a] * scale, joints[b] * scale
                d = pb - pa
                length = np.linalg.norm(d) + 1e-9
                u = d / length
                t = ((xx - pa[0]) * u[0] + (yy - pa[1]) * u[1]) / length
                dist = np.abs((xx - pa[0]) * u[1] - (yy - pa[1]) * u[0])
                band = (t >= 0) & (t <= 1) & (dist <= 0.9)
                cx, cy = C.OP_LIMB_PAF[k]
                paf[cx][band], paf[cy][band] = u[0], u[1]
    heat[18] = 1 - heat[:18].max(0)
    if noise:
        heat += rng.normal(0, noise, heat.shape).astype(np.float32)
        paf += rng.normal(0, noise, paf.shape).astype(np.float32)
    return paf[None], heat[None]
