"""Limb connections: every candidate pair of every limb scored at once, then the reference's greedy choice.

The reference scores pairs in a Python double loop (1.3 s on a crowded 224 crop). Here all pairs of all 19 limbs
are one batch of tensor ops, with the reference's float64 arithmetic in the reference's order, so the scores are
bit-identical: the 10 samples are summed left to right, the distance prior is min(0.5 H / |d| - 1, 0).
"""

from __future__ import annotations

import torch

from .. import constants as C


def _pairs(part: torch.Tensor, n_parts: int):
    """For every limb, all (A peak, B peak) index pairs in the reference's i-major order, flattened over limbs."""
    device = part.device
    counts = torch.bincount(part, minlength=n_parts)
    starts = torch.cumsum(counts, 0) - counts
    limb_a = torch.tensor([a for a, _ in C.OP_LIMBS], device=device)
    limb_b = torch.tensor([b for _, b in C.OP_LIMBS], device=device)
    n_a, n_b = counts[limb_a], counts[limb_b]
    per_limb = n_a * n_b
    limb = torch.repeat_interleave(torch.arange(len(C.OP_LIMBS), device=device), per_limb)
    offset = torch.arange(limb.numel(), device=device) - torch.repeat_interleave(torch.cumsum(per_limb, 0) - per_limb,
                                                                                 per_limb)
    i = torch.div(offset, n_b[limb], rounding_mode="floor")
    j = offset - i * n_b[limb]
    return limb, i, j, starts[limb_a][limb] + i, starts[limb_b][limb] + j, n_a, n_b


def connect(peak_part, peak_x, peak_y, paf: torch.Tensor, image_height: int, n_parts: int = C.NUM_COCO):
    """Kept connections as (C,6) float64 rows [limb k, id A, id B, score, i, j] in the reference's order (limb by
    limb, each by descending score), and the limbs whose end parts have no peaks ("special_k").

    `peak_*`: peaks sorted by part (ids = positions); `paf` (H,W,38) float32 at image resolution.
    """
    device = paf.device
    limb, i, j, id_a, id_b, n_a, n_b = _pairs(peak_part, n_parts)
    special = torch.nonzero((n_a == 0) | (n_b == 0)).flatten().tolist()
    if limb.numel() == 0:
        return torch.zeros((0, 6), dtype=torch.float64, device=device), special

    xa, ya = peak_x[id_a].double(), peak_y[id_a].double()
    dx, dy = peak_x[id_b].double() - xa, peak_y[id_b].double() - ya
    norm = torch.sqrt(dx * dx + dy * dy).clamp(min=0.001)
    ux, uy = dx / norm, dy / norm

    # Sample s of n lies at A + s/(n-1) (B - A); its fraction is a multiple of 1/9, never a rounding tie.
    n = C.OP_PAF_SAMPLES
    s = torch.arange(n, device=device, dtype=torch.float64)
    col = torch.round(xa[:, None] + dx[:, None] * s / (n - 1)).long()
    row = torch.round(ya[:, None] + dy[:, None] * s / (n - 1)).long()
    channels = torch.tensor(C.OP_LIMB_PAF, device=device)[limb]  # (P, 2)
    px = paf[row, col, channels[:, 0:1]].double()
    py = paf[row, col, channels[:, 1:2]].double()
    values = px * ux[:, None] + py * uy[:, None]  # (P, n)

    total = torch.zeros_like(norm)
    for k in range(n):  # left to right, as Python's sum() does
        total = total + values[:, k]
    # Full tensors as operands on purpose: torch turns `tensor / scalar` into a multiplication by the reciprocal
    # and `scalar / tensor` into reciprocal-then-multiply, each off by an ulp from numpy's true division.
    prior = (torch.full_like(norm, 0.5 * image_height) / norm - 1).clamp(max=0)
    score = total / torch.full_like(total, n) + prior
    accepted = ((values > C.OP_PAF_THRESHOLD).sum(1) > 0.8 * n) & (score > 0)
    limb, i, j, id_a, id_b, score = (t[accepted] for t in (limb, i, j, id_a, id_b, score))

    # Stable sort by limb, then by descending score (ties keep the i-major order), then greedy matching.
    order = torch.sort(score, descending=True, stable=True).indices
    order = order[torch.sort(limb[order], stable=True).indices]
    limb, i, j, id_a, id_b, score = (t[order] for t in (limb, i, j, id_a, id_b, score))
    n_peaks = peak_part.numel()
    kept = greedy_matching(limb * n_peaks + id_a, limb * n_peaks + id_b)  # keys unique per limb
    rows = torch.stack([limb.double(), id_a.double(), id_b.double(), score, i.double(), j.double()], 1)
    return rows[kept], special


def greedy_matching(row_key: torch.Tensor, col_key: torch.Tensor) -> torch.Tensor:
    """Indices of the pairs a sequential greedy walk over the list keeps (a pair is kept when neither its row key
    nor its column key is used yet), in list order.

    Computed in rounds: a pair that comes first among the remaining pairs of both its row and its column is kept
    by the walk too, so each round keeps all such pairs and drops the pairs they block. Rounds are few in practice.
    """
    device = row_key.device
    rank = torch.arange(row_key.numel(), device=device)
    alive = torch.ones_like(rank, dtype=torch.bool)
    kept = torch.zeros_like(alive)
    size = int(max(row_key.max().item(), col_key.max().item())) + 1 if rank.numel() else 0
    big = rank.numel()
    while alive.any():
        live = torch.where(alive, rank, big)
        first_in_row = torch.full((size,), big, device=device).scatter_reduce(0, row_key, live, "amin")
        first_in_col = torch.full((size,), big, device=device).scatter_reduce(0, col_key, live, "amin")
        chosen = alive & (first_in_row[row_key] == rank) & (first_in_col[col_key] == rank)
        kept |= chosen
        used_row = torch.zeros(size, dtype=torch.bool, device=device)
        used_col = torch.zeros(size, dtype=torch.bool, device=device)
        used_row[row_key[chosen]] = True
        used_col[col_key[chosen]] = True
        alive &= ~(used_row[row_key] | used_col[col_key])
    return torch.nonzero(kept).flatten()
