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
from . import cvthreads


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
    with cvthreads.alone():  # IPP's result depends on its threads: the reference's, always (see cvthreads)
        scaled = cv2.resize(image, (0, 0), fx=m, fy=m, interpolation=cv2.INTER_CUBIC)
    if scaled.ndim == 2:  # OpenCV drops a trailing axis of 1; never for 3 channels, but be explicit
        scaled = scaled[:, :, None]
    if geo.pad_down or geo.pad_right:
        padded = np.full((*geo.input_hw, 3), C.OP_PAD_VALUE, dtype=scaled.dtype)
        padded[: scaled.shape[0], : scaled.shape[1]] = scaled
    else:  # a 224 crop scales to 184 x 184, a multiple of 8 already
        padded = scaled
    # x / 256 - 0.5 in float32, written straight into the (1,3,h,w) layout: two passes over the input, not five
    net_input = np.empty((1, 3, *geo.input_hw), dtype=np.float32)
    np.divide(padded.transpose(2, 0, 1), np.float32(256), out=net_input[0], dtype=np.float32)
    np.subtract(net_input, np.float32(0.5), out=net_input)
    return net_input, geo


def bgr_from_rgb(image) -> np.ndarray:
    """An HxWx3 image with its first and last channels swapped, as a new contiguous array (cvtColor where OpenCV
    takes the dtype: about 4x faster than numpy's strided copy, the same values)."""
    image = np.asarray(image)
    if image.dtype in (np.uint8, np.uint16, np.float32) and image.ndim == 3 and image.shape[2] == 3:
        return cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return np.ascontiguousarray(image[:, :, ::-1])
