"""The network input pytorch-openpose builds from an image (REFERENCE.md E.1), and its geometry.

The image is scaled to 184 rows (one scale of 0.5 x boxsize 368), padded bottom/right to multiples of 8 with grey
128, and mapped to [-0.5, 0.5) by /256 - 0.5 in its own channel order (BGR for the published weights).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .. import constants as C
from ..errors import MeshconfError


@dataclass(frozen=True)
class NetGeometry:
    """How an image of `image_hw` maps onto the network input and output grids."""

    image_hw: tuple[int, int]
    scaled_hw: tuple[int, int]  # after the resize, before padding
    pad_down: int
    pad_right: int

    @property
    def input_hw(self) -> tuple[int, int]:
        return self.scaled_hw[0] + self.pad_down, self.scaled_hw[1] + self.pad_right

    @property
    def output_hw(self) -> tuple[int, int]:
        return self.input_hw[0] // C.OP_STRIDE, self.input_hw[1] // C.OP_STRIDE


def multiplier(height: int) -> float:
    return C.OP_SCALE * C.OP_BOXSIZE / height


def geometry(image_hw) -> NetGeometry:
    """The sizes OpenCV's `resize(fx=fy=m)` produces (round(W m) x round(H m)) and the padding to a multiple of 8."""
    height, width = int(image_hw[0]), int(image_hw[1])
    m = multiplier(height)
    h, w = int(round(height * m)), int(round(width * m))
    if h < 1 or w < 1:
        raise MeshconfError(f"an image of {height}x{width} px is too narrow for OpenPose "
                            f"(it scales to {h}x{w}); pass an image at least a few pixels wide")
    stride = C.OP_STRIDE
    return NetGeometry((height, width), (h, w), (stride - h % stride) % stride, (stride - w % stride) % stride)


def check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise MeshconfError(f"OpenPose needs an HxWx3 BGR image, got an array of shape {image.shape}; "
                            "convert grayscale or RGBA images to 3-channel BGR first")
    if not (image.dtype == np.uint8 or np.issubdtype(image.dtype, np.floating)):
        raise MeshconfError(f"OpenPose needs a uint8 or float BGR image, got dtype {image.dtype}")
    return image


def has_room(image_hw) -> bool:
    """Whether an image of this size gives a network input at all (no pixels, or a 1000:1 sliver, does not)."""
    height, width = int(image_hw[0]), int(image_hw[1])
    return height > 0 and width > 0 and round(width * multiplier(height)) >= 1


def preprocess(image_bgr) -> tuple[np.ndarray, NetGeometry]:
    """(1,3,h,w) float32 network input for an HxWx3 uint8 or float image (channel order kept), and its geometry."""
    image = check_image(image_bgr)
    geo = geometry(image.shape[:2])
    m = multiplier(image.shape[0])
    # fx=fy=m, not an explicit dsize: OpenCV then maps coordinates with m itself, as the reference does.
    scaled = cv2.resize(image, (0, 0), fx=m, fy=m, interpolation=cv2.INTER_CUBIC)
    if scaled.ndim == 2:  # OpenCV drops a trailing axis of 1; never for 3 channels, but be explicit
        scaled = scaled[:, :, None]
    padded = np.full((*geo.input_hw, 3), C.OP_PAD_VALUE, dtype=scaled.dtype)
    padded[: scaled.shape[0], : scaled.shape[1]] = scaled
    net_input = padded.astype(np.float32).transpose(2, 0, 1)[None] / np.float32(256) - np.float32(0.5)
    return np.ascontiguousarray(net_input), geo
