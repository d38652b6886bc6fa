"""Limb connections: every candidate pair of every limb scored at once, then the reference's greedy choice.

The reference scores pairs in a Python double loop (1.3 s on a crowded 224 crop). Here all pairs of all 19 limbs
are one batch of tensor ops, with the reference's float64 arithmetic in the reference's order, so the scores are
bit-identical: the 10 samples are summed left to right, the distance prior is min(0.5 H / |d| - 1, 0).
"""

from __future__ import annotations

import torch

from .. import constants as C


def _pairs(group: torch.Tensor, n_crops: int, n_parts: int):
    """For every limb of every crop, all (A peak, B peak) index pairs in the reference's i-major order, flattened
    over (crop, limb). `group` = crop * n_parts + part of each peak, peaks sorted by it (ids = positions)."""
    device = group.device
    counts = torch.bincount(group, minlength=n_crops * n_parts)
    starts = torch.cumsum(counts, 0) - counts
    limbs = len(C.OP_LIMBS)
    base = (torch.arange(n_crops, device=device) * n_parts)[:, None]
    group_a = (base + torch.tensor([a for a, _ in C.OP_LIMBS], device=device)).flatten()  # (n_crops * limbs,)
    group_b = (base + torch.tensor([b for _, b in C.OP_LIMBS], device=device)).flatten()
    n_a, n_b = counts[group_a], counts[group_b]
    per_limb = n_a * n_b
    crop_limb = torch.repeat_interleave(torch.arange(n_crops * limbs, device=device), per_limb)
    offset = torch.arange(crop_limb.numel(), device=device) - torch.repeat_interleave(
        torch.cumsum(per_limb, 0) - per_limb, per_limb)
    i = torch.div(offset, n_b[crop_limb], rounding_mode="floor")
    j = offset - i * n_b[crop_limb]
    id_a, id_b = starts[group_a][crop_limb] + i, starts[group_b][crop_limb] + j
    special = ((n_a == 0) | (n_b == 0)).view(n_crops, limbs)
    return crop_limb, i, j, id_a, id_b, special


def connect(peak_part, peak_x, peak_y, paf: torch.Tensor, image_height: int, n_parts: int = C.NUM_COCO):
    """Kept connections as (C,6) float64 rows [limb k, id A, id B, score, i, j] in the reference's order (limb by
    limb, each by descending score), and the limbs whose end parts have no peaks ("special_k").

    `peak_*`: peaks sorted by part (ids = positions); `paf` (H,W,38) float32 at image resolution.
    """
    crop = torch.zeros_like(peak_part)
    rows, special = connect_batch(crop, peak_part, peak_x, peak_y, paf[None], image_height, n_parts)
    return rows[:, 1:], torch.nonzero(special[0]).flatten().tolist()


def connect_batch(peak_crop, peak_part, peak_x, peak_y, paf: torch.Tensor, image_height: int,
                  n_parts: int = C.NUM_COCO):
    """`connect` for B crops at once: peaks sorted by (crop, part), `paf` (B,H,W,38). Returns (C,7) float64 rows
    [crop, limb k, id A, id B, score, i, j] (ids global: positions in the peak list), crop by crop in the
    reference's order, and a (B,19) mask of the limbs with no peaks at one end."""
    device = paf.device
    n_crops = paf.shape[0]
    crop_limb, i, j, id_a, id_b, special = _pairs(peak_crop * n_parts + peak_part, n_crops, n_parts)
    if crop_limb.numel() == 0:
        return torch.zeros((0, 7), dtype=torch.float64, device=device), special
    limbs = len(C.OP_LIMBS)
    crop, limb = torch.div(crop_limb, limbs, rounding_mode="floor"), crop_limb % limbs

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
    _, height, width, depth = paf.shape
    pixel = ((crop[:, None] * height + row) * width + col) * depth  # flat gathers: far faster than 4-D indexing
    flat = paf.reshape(-1)
    px = flat[pixel + channels[:, 0:1]].double()
    py = flat[pixel + channels[:, 1:2]].double()
    values = px * ux[:, None] + py * uy[:, None]  # (P, n)

    total = torch.zeros_like(norm)
    for k in range(n):  # left to right, as Python's sum() does
        total = total + values[:, k]
    # Full tensors as operands on purpose: torch turns `tensor / scalar` into a multiplication by the reciprocal
    # and `scalar / tensor` into reciprocal-then-multiply, each off by an ulp from numpy's true division.
    prior = (torch.full_like(norm, 0.5 * image_height) / norm - 1).clamp(max=0)
    score = total / torch.full_like(total, n) + prior
    accepted = ((values > C.OP_PAF_THRESHOLD).sum(1) > 0.8 * n) & (score > 0)
    crop_limb, crop, limb, i, j, id_a, id_b, score = (
        t[accepted] for t in (crop_limb, crop, limb, i, j, id_a, id_b, score))

    # Stable sort by (crop, limb), then by descending score (ties keep the i-major order), then greedy matching.
    order = torch.sort(score, descending=True, stable=True).indices
    order = order[torch.sort(crop_limb[order], stable=True).indices]
    crop, limb, i, j, id_a, id_b, score = (t[order] for t in (crop, limb, i, j, id_a, id_b, score))
    n_peaks = peak_part.numel()
    kept = greedy_matching(limb * n_peaks + id_a, limb * n_peaks + id_b)  # ids are global: keys unique per crop
    rows = torch.stack([crop.double(), limb.double(), id_a.double(), id_b.double(), score, i.double(),
                        j.double()], 1)
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
