"""Detection: preprocessing, the network (batched) and decoding, for one image or many."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from .batch import decode_batch
from .decoding import Decoded, decode_full
from .preprocess import check_image, has_room, preprocess

# Where detect_batch decodes when its caller does not say: None = on the model's device off the CPU (benchmarks
# set it to compare the two paths inside whole jobs).
DECODE_ON_DEVICE: bool | None = None


def _empty() -> tuple[np.ndarray, np.ndarray]:
    """The reference's result when there are no peaks: a 1-D empty candidate and no people."""
    return np.zeros((0,)), np.zeros((0, 20))


def _empty_decoded() -> Decoded:
    candidate, subset = _empty()
    return Decoded(candidate, subset, np.zeros((0, 5)), np.zeros((0, 6)), [], subset, np.zeros(0, np.int64))


def _device_and_dtype(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    param = next(model.parameters())
    return param.device, param.dtype


def forward_tensors(model: torch.nn.Module, net_input: np.ndarray, batch: int | None = None):
    """(paf, heatmap) float32 tensors on the model's device for a (B,3,h,w) float32 input, in the model's dtype.
    `batch`: the batch size a compiled model runs (a shorter input is padded to it rather than compiled again)."""
    from ..accel import call_padded

    device, dtype = _device_and_dtype(model)
    with torch.inference_mode():
        x = torch.from_numpy(net_input)
        if device.type == "cuda":  # pinned memory: the copy does not wait for a pageable staging buffer
            x = x.pin_memory()
        x = x.to(device=device, dtype=dtype, non_blocking=True)
        if dtype == torch.bfloat16:
            x = x.contiguous(memory_format=torch.channels_last)
        paf, heatmap = call_padded(model, x, batch or len(net_input))
        return paf.float(), heatmap.float()


def forward(model: torch.nn.Module, net_input: np.ndarray, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """`forward_tensors` as float32 numpy arrays (one copy of both maps from the device)."""
    return _host(*forward_tensors(model, net_input, batch))


def detect(model: torch.nn.Module, image_bgr) -> tuple[np.ndarray, np.ndarray]:
    """(candidate (N,4), subset (M,20)) for an HxWx3 uint8 or float BGR image, exactly as pytorch-openpose's
    `Body(image)`: candidate rows x, y, score, id (shape (0,) if no peaks), subset rows 18 ids, total, count.
    An image with no pixels gives that empty result too."""
    if not has_room(check_image(image_bgr).shape[:2]):
        return _empty()
    net_input, geo = preprocess(image_bgr)
    paf, heatmap = forward(model, net_input)
    out = decode_full(paf, heatmap, geo.image_hw, device=_device_and_dtype(model)[0])
    return out.candidate, out.subset


@dataclass
class Launched:
    """The network maps of a list of images, queued on the model's device and not decoded yet (`detect_launch`,
    then `detect_finish`). `results` holds the answers already known (images too small for the network)."""

    prepared: list
    results: list
    chunks: list  # (image indices, paf, heatmap), one per forward pass
    on_device: bool
    device: torch.device


def detect_launch(model: torch.nn.Module, images: Sequence, batch_size: int = 16,
           decode_on_device: bool | None = None) -> Launched:
    """The forward passes of `detect_batch`, queued (on a GPU nothing waits for them here). Every map is held until
    `detect_finish`, so give it one batch of images, not a whole dataset."""
    device = _device_and_dtype(model)[0]
    prepared = _prepare(images)
    results: list = [None] * len(prepared)
    on_device = _decodes_on_device(device, decode_on_device)
    chunks = []
    for indices in _chunks(prepared, batch_size):
        net_input = np.concatenate([prepared[i][0] for i in indices])
        chunks.append((indices, *forward_tensors(model, net_input, batch=batch_size)))
    return Launched(prepared, results, chunks, on_device, device)


def detect_finish(launched: Launched, full: bool = False) -> list:
    """`detect_batch`'s results for launched maps: one (candidate, subset) per image, or a `Decoded` with `full`."""
    for indices, paf, heatmap in launched.chunks:
        _decode_chunk(launched, indices, paf, heatmap, full)
    launched.chunks = []  # the maps are not needed any more
    return [out if out is not None else (_empty_decoded() if full else _empty()) for out in launched.results]


def _prepare(images: Sequence) -> list:
    """(network input, geometry) per image, None where the image has no room for the network. On the launching
    thread, one image after the other: OpenCV's resize of the network input must run alone (see `cvthreads`)."""
    return [preprocess(image) if has_room(check_image(image).shape[:2]) else None for image in images]


def _decodes_on_device(device: torch.device, asked: bool | None) -> bool:
    # On a GPU the maps are decoded where they are (`decode_batch`); on the CPU crop by crop (`decode_full`), which
    # measured faster there than the batched tensor path (35 against 42-52 ms a crop on 2 cores: cache-sized work).
    asked = DECODE_ON_DEVICE if asked is None else asked
    return device.type != "cpu" if asked is None else asked


def _chunks(prepared: list, batch_size: int) -> list[list[int]]:
    """Indices of the images that share forward passes: same network input size, at most `batch_size`."""
    groups: dict[tuple, list[int]] = {}
    for index, item in enumerate(prepared):
        if item is not None:
            groups.setdefault(item[0].shape, []).append(index)
    return [indices[start: start + batch_size] for indices in groups.values()
            for start in range(0, len(indices), batch_size)]


def _decode_chunk(launched: Launched, chunk: list[int], paf: torch.Tensor, heatmap: torch.Tensor, full: bool,
                  bar=None) -> None:
    """Decode one forward pass's maps into `launched.results`."""
    prepared, results = launched.prepared, launched.results
    if launched.on_device:  # the whole chunk at once where its maps are, per image size
        sizes: dict[tuple, list[int]] = {}
        for k, i in enumerate(chunk):
            sizes.setdefault(prepared[i][1].image_hw, []).append(k)
        for image_hw, ks in sizes.items():
            index = torch.tensor(ks, device=paf.device)
            for k, out in zip(ks, decode_batch(paf[index], heatmap[index], image_hw)):
                results[chunk[k]] = out if full else (out.candidate, out.subset)
    else:
        paf, heatmap = _host(paf, heatmap)
        for k, i in enumerate(chunk):
            out = decode_full(paf[k], heatmap[k], prepared[i][1].image_hw, device=launched.device)
            results[i] = out if full else (out.candidate, out.subset)
    if bar is not None:
        bar.update(len(chunk))


def _host(paf: torch.Tensor, heatmap: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Both maps as float32 numpy arrays, in one copy from the device."""
    both = torch.cat([paf.flatten(1), heatmap.flatten(1)], 1).cpu().numpy()
    split = paf[0].numel()
    return both[:, :split].reshape(paf.shape), both[:, split:].reshape(heatmap.shape)


def detect_batch(model: torch.nn.Module, images: Sequence, batch_size: int = 16, progress: bool = False,
                 overlap: bool | None = None, full: bool = False, decode_on_device: bool | None = None) -> list:
    """`detect` for many images: images whose network inputs have the same size share forward passes of up to
    `batch_size`. Returns one (candidate, subset) per image, in input order, equal to `detect` on each; with
    `full`, the whole `Decoded` (all peaks, limb connections) instead.

    `overlap` (default: on a GPU) decodes a batch in a worker thread while the next batch's forward runs. On a CPU
    both want the same cores (the forward uses every core, and the decode switches torch to one thread while it
    runs), so there it is off unless asked. `decode_on_device` (default: off the CPU) decodes each batch with
    `decode_batch` on the model's device; the results are the same either way. Unlike `detect_launch`, only the maps of
    the batches in flight are held, so any number of images may be given."""
    device = _device_and_dtype(model)[0]
    prepared = _prepare(images)
    state = Launched(prepared, [None] * len(prepared), [], _decodes_on_device(device, decode_on_device), device)
    if overlap is None:
        overlap = device.type == "cuda"
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(prepared), desc="OpenPose", unit="img", initial=sum(p is None for p in prepared),
                   disable=None)  # quiet when not on a terminal
    chunks = _chunks(prepared, batch_size)
    pool = _decoder() if overlap and len(chunks) > 1 else None
    pending = None
    for chunk in chunks:
        net_input = np.concatenate([prepared[i][0] for i in chunk])
        paf, heatmap = forward_tensors(model, net_input, batch=batch_size)
        if pool is None:
            _decode_chunk(state, chunk, paf, heatmap, full, bar)
            continue
        if pending is not None:
            pending.result()  # one batch decoding at a time, in order
        pending = pool.submit(_decode_chunk, state, chunk, paf, heatmap, full, bar)
    if pending is not None:
        pending.result()
    if bar is not None:
        bar.close()
    return detect_finish(state, full)


@lru_cache(maxsize=1)
def _decoder():
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshconf-decode")
