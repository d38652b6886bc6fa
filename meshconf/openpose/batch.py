"""Decoding a whole batch of crops where its maps are: one set of tensor ops for B crops, exactly `decode_full`.

Upsampling (OpenCV's cubic resize, reproduced bit for bit by `resize`), the approximate smoothing, peak finding with
its exact re-decision of near-ties, and limb scoring run for all crops at once on the maps' device; only the peaks
and the kept connections leave it. The greedy assembly of people stays on the CPU, crop by crop. A crop the batched
path cannot decide exactly (non-finite maps, an image narrower than the smoothing filter, a plateau with thousands
of tied pixels) is decoded by `decode_full`, which hands those to scipy.

On the CPU, OpenCV's own resize is used (the same numbers, 10-20x faster there than tensor ops); on a GPU the
tensor reproduction, so the maps never travel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache

import numpy as np
import torch

from .. import constants as C
from ..errors import MeshconfError
from ..runtime import host_map, host_workers
from .assembly import assemble
from .decoding import Decoded, smoothing_operators, decode_full, upsample
from .limbs import connect_batch
from .network import NUM_HEATMAP, NUM_PAF
from .peaks import RADIUS, REL_EPS, batch_peaks
from .preprocess import NetGeometry, geometry
from .resize import upsample_batch

UPSAMPLERS = ("auto", "opencv", "tensor")


def _as_batch(maps, channels: int, name: str) -> torch.Tensor:
    maps = maps if isinstance(maps, torch.Tensor) else torch.from_numpy(np.asarray(maps))
    if maps.ndim != 4 or maps.shape[1] != channels:
        raise MeshconfError(f"{name} must have shape (B,{channels},h,w), got {tuple(maps.shape)}")
    return maps.detach().float()


@lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    import os

    return ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1)), thread_name_prefix="meshconf-resize")


def _upsampled(maps: torch.Tensor, geo: NetGeometry, channels: int, method: str) -> torch.Tensor:
    """(B,H,W,channels) float32 on the maps' device: OpenCV in a thread pool, or its tensor reproduction."""
    if method == "tensor":
        return upsample_batch(maps, geo, channels)
    arrays = maps.cpu().numpy()
    out = list(_pool().map(lambda m: upsample(m, geo)[:, :, :channels], arrays))
    return torch.from_numpy(np.stack(out)).to(maps.device)


def _smoothed(low: torch.Tensor, geo: NetGeometry) -> tuple[torch.Tensor, torch.Tensor]:
    """The smoothed full-resolution heatmaps straight from the (B,P,h,w) network maps in float64, and the error
    budget per channel (see `decoding.approximate_smoothing`, whose operators and bound these are)."""
    ky, kx = (torch.from_numpy(k).to(low.device) for k in smoothing_operators(geo))
    smoothed = (ky @ low.double() @ kx.T).float()
    bound = 4.0 * low.abs().flatten(2).amax(2).double()
    return smoothed, REL_EPS * bound


def decode_batch(net_paf, net_heatmap, image_hw, upsampler: str = "auto",
                 assembly_workers: int | None = None) -> list[Decoded]:
    """`decode_full` for B crops of one image size: net_paf (B,38,h,w) and net_heatmap (B,19,h,w), tensors on any
    device or arrays. Every result equals `decode_full` on that crop, bit for bit. `assembly_workers`: processes
    assembling the crops' people (default `runtime.host_workers`: some on a GPU host, none on the CPU)."""
    if upsampler not in UPSAMPLERS:
        raise MeshconfError(f"upsampler must be one of {UPSAMPLERS}, got {upsampler!r}")
    paf, heat = _as_batch(net_paf, NUM_PAF, "net_paf"), _as_batch(net_heatmap, NUM_HEATMAP, "net_heatmap")
    geo = geometry(image_hw)
    if paf.shape[0] != heat.shape[0] or paf.shape[2:] != geo.output_hw or heat.shape[2:] != geo.output_hw:
        raise MeshconfError(f"maps of shapes {tuple(paf.shape)} and {tuple(heat.shape)} do not fit a batch of "
                            f"{geo.image_hw[0]}x{geo.image_hw[1]} crops (network output {geo.output_hw})")
    device = heat.device
    method = upsampler if upsampler != "auto" else ("opencv" if device.type == "cpu" else "tensor")
    results: list = [None] * heat.shape[0]
    finite = torch.isfinite(heat.flatten(1)).all(1) & torch.isfinite(paf.flatten(1)).all(1)
    fast = torch.nonzero(finite).flatten() if min(geo.image_hw) > RADIUS else finite.new_zeros(0, dtype=torch.long)
    if fast.numel():
        workers = host_workers(device) if assembly_workers is None else assembly_workers
        decided = _decode_fast(paf[fast], heat[fast], geo, method, workers)
        for k, out in zip(fast.tolist(), decided):
            results[k] = out
    for k, out in enumerate(results):
        if out is None:  # the cases scipy decides
            results[k] = decode_full(paf[k].cpu().numpy(), heat[k].cpu().numpy(), geo.image_hw)
    return results


def _decode_fast(paf: torch.Tensor, heat: torch.Tensor, geo: NetGeometry, method: str, workers: int = 0) -> list:
    """Decoded crops (None where a plateau needs scipy) for finite maps of images wider than the filter."""
    parts = C.NUM_COCO  # channel 18 (background) is never searched
    height, width = geo.image_hw
    heat_up = _upsampled(heat, geo, parts, method)
    smoothed, eps = _smoothed(heat[:, :parts], geo)
    crop, part, row, col, plateau = batch_peaks(heat_up, smoothed, eps)
    del smoothed
    order = torch.argsort(((crop * parts + part) * height + row) * width + col)
    crop, part, row, col = crop[order], part[order], row[order], col[order]
    score = heat_up[crop, row, col, part].double()
    del heat_up
    connections, special = connect_batch(crop, part, col, row, _upsampled(paf, geo, NUM_PAF, method), height, parts)

    # one transfer of everything the assembly needs
    peaks = torch.stack([col.double(), row.double(), score, part.double(), crop.double()], 1).cpu().numpy()
    connections, special = connections.cpu().numpy(), special.cpu().numpy()
    needs_scipy = plateau.any(1).cpu().numpy()
    n_crops = heat.shape[0]
    peak_starts = np.searchsorted(peaks[:, 4], np.arange(n_crops + 1))
    conn_starts = np.searchsorted(connections[:, 0], np.arange(n_crops + 1))
    crops, jobs = [], []
    for b in range(n_crops):
        if needs_scipy[b]:
            continue
        first = peak_starts[b]
        mine = peaks[first: peak_starts[b + 1]]
        all_peaks = np.stack([mine[:, 0], mine[:, 1], mine[:, 2], np.arange(len(mine), dtype=np.float64),
                              mine[:, 3]], 1)
        rows = connections[conn_starts[b]: conn_starts[b + 1], 1:].copy()
        rows[:, 1:3] -= first  # global peak positions -> this crop's ids
        crops.append((b, all_peaks, rows))
        jobs.append((rows, all_peaks[:, 2]))
    out: list = [None] * n_crops
    for (b, all_peaks, rows), (subset, before, deleted) in zip(crops, host_map(_assemble_job, jobs, workers)):
        candidate = all_peaks[:, :4].copy() if len(all_peaks) else np.zeros((0,))
        out[b] = Decoded(candidate, subset, all_peaks, rows, np.flatnonzero(special[b]).tolist(), before, deleted)
    return out


def _assemble_job(job):
    return assemble(*job)

