"""Reading and writing images with one-line errors, whatever the input looks like; writes are atomic."""

from __future__ import annotations

import os
import sys

import cv2
import numpy as np

from ..errors import MeshconfError
from .fileio import write_atomic  # noqa: F401  (re-exported: older imports)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MIN_SIDE = 8  # smaller images cannot hold a person at any useful resolution


def to_bgr_u8(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Grayscale, RGBA/BGRA, 16-bit and float images -> HxWx3 uint8 BGR."""
    image = np.asarray(image)
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise MeshconfError(f"{name}: unsupported image layout {image.shape}; expected gray, BGR or BGRA")
    if image.dtype == np.uint16:
        image = (image / 257.0).round().astype(np.uint8)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise MeshconfError(f"{name}: the image holds NaN or infinite values")
        scale = 255.0 if image.max() <= 1.0 else 1.0
        image = np.clip(image * scale, 0, 255).round().astype(np.uint8)
    elif image.dtype != np.uint8:
        raise MeshconfError(f"{name}: unsupported pixel type {image.dtype}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:  # composite on white so that transparent areas do not turn black
        alpha = image[:, :, 3:4].astype(np.float32) / 255.0
        image = (image[:, :, :3] * alpha + 255.0 * (1 - alpha)).round().astype(np.uint8)
    return np.ascontiguousarray(image)


def image_size(path) -> tuple[int, int] | None:
    """(width, height) from the file's header without decoding it, or None where Pillow cannot tell."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # only the header is read; the size check is ours
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # any reader failure just means: no cheap answer, decode and see
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def read_bgr(path, max_pixels: float | None = None) -> np.ndarray:
    """HxWx3 uint8 BGR from an image file; any failure is a one-line `MeshconfError` naming the file.
    With `max_pixels`, larger images are refused from their header, before any memory is spent on them."""
    return read_bgr_digest(path, max_pixels)[0]


def content_digest(data) -> str:
    """The short content hash resumable jobs store per row (64 bits of SHA-256 of the file's bytes)."""
    import hashlib

    return hashlib.sha256(memoryview(data)).hexdigest()[:16]


def file_digest(path) -> str:
    return content_digest(np.fromfile(os.fspath(path), dtype=np.uint8))


def read_bgr_digest(path, max_pixels: float | None = None) -> tuple[np.ndarray, str]:
    """`read_bgr` and the `content_digest` of the bytes it decoded (hashed as read: no second read)."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MeshconfError(f"{path}: no such file")
    if max_pixels is not None:
        size = image_size(path)
        if size is not None and size[0] * size[1] > max_pixels:
            raise MeshconfError(f"{path}: {size[0]}x{size[1]} px is more than the limit of {max_pixels:.0f} pixels; "
                                f"downscale it, or raise the limit with --max-pixels")
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if image is None:
        raise MeshconfError(f"{path}: not a readable image (corrupt, empty or an unsupported format)")
    image = to_bgr_u8(image, path)
    if min(image.shape[:2]) < MIN_SIDE:
        raise MeshconfError(f"{path}: image of {image.shape[1]}x{image.shape[0]} px is too small (at least "
                            f"{MIN_SIDE} px per side)")
    return image, content_digest(data)


def write_image(path, image_bgr: np.ndarray) -> None:
    ok, encoded = cv2.imencode(os.path.splitext(os.fspath(path))[1] or ".png", image_bgr)
    if not ok:
        raise MeshconfError(f"could not encode {path}")
    write_atomic(path, encoded.tobytes())


def expand_inputs(inputs: list[str]) -> list[tuple[str, str]]:
    """(kind, path) for each input; folders expand to their images and videos, sorted."""
    out = []
    for item in inputs:
        if os.path.isdir(item):
            names = sorted(os.listdir(item))
            media = [n for n in names if n.lower().endswith(IMAGE_SUFFIXES + VIDEO_SUFFIXES)]
            folders = [n for n in media if os.path.isdir(os.path.join(item, n))]
            for name in folders:  # a folder named like an image is not one; sub-folders are not searched
                print(f"note: {os.path.join(item, name)} is a folder, skipped", file=sys.stderr)
            media = [n for n in media if n not in folders]
            if not media:
                raise MeshconfError(f"{item}: folder holds no images or videos ({', '.join(IMAGE_SUFFIXES)})")
            out.extend(("video" if n.lower().endswith(VIDEO_SUFFIXES) else "image", os.path.join(item, n))
                       for n in media)
        elif item.lower().endswith(VIDEO_SUFFIXES):
            out.append(("video", item))
        else:
            out.append(("image", item))
    return out
