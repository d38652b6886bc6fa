"""Pure, batched geometry: rotations, SPIN's camera and projection, SPIN's crop.

No I/O and no devices are chosen here: functions take tensors or arrays and return the same kind. The arithmetic
follows SPIN exactly (REFERENCE.md A.3, B.4-B.6, C), because the published weights expect it.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from . import constants as C


# ------------------------------------------------------------------------------------------------------------------
# Rotations

def rot6d_to_rotmat(x: torch.Tensor) -> torch.Tensor:
    """6D rotation representation (..., 6k) -> rotation matrices (N, 3, 3), N = numel / 6.

    The six numbers of a joint are a row-major 3x2 matrix: the columns (e0, e2, e4) and (e1, e3, e5) are
    Gram-Schmidt orthonormalised into b1, b2, and R = [b1 b2 b1 x b2] (columns).
    """
    x = x.reshape(-1, 3, 2)
    a1, a2 = x[:, :, 0], x[:, :, 1]
    b1 = F.normalize(a1)
    b2 = F.normalize(a2 - (b1 * a2).sum(dim=-1, keepdim=True) * b1)
    b3 = torch.linalg.cross(b1, b2, dim=1)
    return torch.stack((b1, b2, b3), dim=-1)


def batch_rodrigues(axis_angle: torch.Tensor) -> torch.Tensor:
    """Axis-angle (N, 3) -> rotation matrices (N, 3, 3), through a unit quaternion as SPIN does."""
    angle = torch.norm(axis_angle + 1e-8, p=2, dim=1)
    normalized = axis_angle / angle.unsqueeze(-1)
    half = angle * 0.5
    quat = torch.cat([torch.cos(half).unsqueeze(-1), torch.sin(half).unsqueeze(-1) * normalized], dim=1)
    quat = quat / quat.norm(p=2, dim=1, keepdim=True)
    w, x, y, z = quat[:, 0], quat[:, 1], quat[:, 2], quat[:, 3]
    w2, x2, y2, z2 = w * w, x * x, y * y, z * z
    wx, wy, wz, xy, xz, yz = w * x, w * y, w * z, x * y, x * z, y * z
    return torch.stack([
        w2 + x2 - y2 - z2, 2 * xy - 2 * wz, 2 * wy + 2 * xz,
        2 * wz + 2 * xy, w2 - x2 + y2 - z2, 2 * yz - 2 * wx,
        2 * xz - 2 * wy, 2 * wx + 2 * yz, w2 - x2 - y2 + z2,
    ], dim=1).view(-1, 3, 3)


# ------------------------------------------------------------------------------------------------------------------
# Camera and projection

def camera_translation(camera: torch.Tensor, focal_length: float = C.FOCAL_LENGTH,
                       img_res: int = C.IMG_RES) -> torch.Tensor:
    """SPIN's weak-perspective camera [s, tx, ty] (B, 3) -> translation [tx, ty, 2f / (res*s)] (B, 3)."""
    depth = 2 * focal_length / (img_res * camera[:, 0] + 1e-9)
    return torch.stack([camera[:, 1], camera[:, 2], depth], dim=-1)


def full_image_camera(camera, center, box_side: float, image_wh) -> tuple[np.ndarray, float]:
    """(translation (3,), focal length px) that place a crop's mesh in the full image: a pinhole camera with its
    principal point at the image centre and SPIN's crop focal length scaled to the box (f b / 224), so the mesh
    projects where the crop saw it (the weak-perspective step of SPIN's camera, as 4D-Humans' cam_crop_to_full)."""
    s, tx, ty = (float(v) for v in camera)
    width, height = image_wh
    scaled = box_side * s + 1e-9
    translation = np.array([tx + 2 * (float(center[0]) - width / 2) / scaled,
                            ty + 2 * (float(center[1]) - height / 2) / scaled,
                            2 * C.FOCAL_LENGTH / (C.IMG_RES * s + 1e-9)])
    return translation, C.FOCAL_LENGTH * box_side / C.IMG_RES


def perspective_projection(points: torch.Tensor, translation: torch.Tensor,
                           focal_length: float = C.FOCAL_LENGTH,
                           camera_center: float = float(C.CROP_CENTER),
                           rotation: torch.Tensor | None = None) -> torch.Tensor:
    """Pinhole projection of (B, N, 3) points moved by `translation` (B, 3) -> (B, N, 2) crop pixels."""
    if rotation is not None:
        points = torch.einsum("bij,bkj->bki", rotation, points)
    points = points + translation.unsqueeze(1)
    projected = points / points[:, :, -1:]
    return projected[:, :, :2] * focal_length + camera_center


def project_spin_joints(joints: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """SPIN's 3D joints (B, N, 3) and camera (B, 3) -> 2D keypoints (B, N, 2) in 224-crop pixels."""
    return perspective_projection(joints, camera_translation(camera))


def to_normalized(points_px):
    """Crop pixels -> normalised units, (p - 112) / 112 (1.0 = 112 px)."""
    return (points_px - C.NORM_UNIT_PX) / C.NORM_UNIT_PX


# ------------------------------------------------------------------------------------------------------------------
# SPIN's crop (utils/imutils.py) with scipy 1.0's imresize, byte scaling included

def get_transform(center, scale: float, res=(C.IMG_RES, C.IMG_RES)) -> np.ndarray:
    """The 3x3 float64 affine that maps original pixels into the crop (no rotation)."""
    h = C.BOX_SCALE_PX * scale
    t = np.zeros((3, 3))
    t[0, 0] = float(res[1]) / h
    t[1, 1] = float(res[0]) / h
    t[0, 2] = res[1] * (-float(center[0]) / h + 0.5)
    t[1, 2] = res[0] * (-float(center[1]) / h + 0.5)
    t[2, 2] = 1
    return t


def transform_point(pt, center, scale: float, res=(C.IMG_RES, C.IMG_RES), invert: bool = False) -> np.ndarray:
    """SPIN's `transform`: 1-based point through the affine, truncated toward zero to integers.

    The inverse goes through `np.linalg.inv` on purpose: the truncation is sensitive to the last bit, and the
    reference's crop boxes come out of exactly this computation.
    """
    t = get_transform(center, scale, res)
    if invert:
        t = np.linalg.inv(t)
    new_pt = np.dot(t, np.array([pt[0] - 1, pt[1] - 1, 1.0]))
    return new_pt[:2].astype(int) + 1


def crop_box(center, scale: float, res: int = C.IMG_RES) -> tuple[np.ndarray, np.ndarray]:
    """Upper-left and bottom-right corners (x, y) of the crop box in original pixels."""
    ul = transform_point([1, 1], center, scale, (res, res), invert=True) - 1
    br = transform_point([res + 1, res + 1], center, scale, (res, res), invert=True) - 1
    return ul, br


def bytescale(data: np.ndarray) -> np.ndarray:
    """scipy 1.0's `bytescale`: stretch [min, max] of the WHOLE array to [0, 255], round half up, uint8."""
    if data.dtype == np.uint8:
        return data
    return _stretch(data, data.min(), data.max())


def _bytescale_lut(cmin, cmax) -> np.ndarray:
    """`bytescale` of a canvas whose extremes are cmin, cmax, as a table over the 256 values it can hold."""
    return _stretch(np.arange(256, dtype=np.float64), np.float64(cmin), np.float64(cmax))


def _stretch(data: np.ndarray, cmin, cmax) -> np.ndarray:
    cscale = cmax - cmin
    if cscale == 0:
        cscale = 1
    scale = float(255 - 0) / cscale
    bytedata = (data - cmin) * scale + 0
    return (bytedata.clip(0, 255) + 0.5).astype(np.uint8)


def _imresize_rgb(canvas: np.ndarray, res: int) -> np.ndarray:
    """scipy 1.0's `imresize(canvas, (res, res))` for a 3-channel float canvas: bytescale, PIL RGB, bilinear."""
    data = bytescale(canvas)
    channel_axis = int(np.flatnonzero(np.asarray(data.shape) == 3)[0])
    # toimage() makes the first axis of size 3 the channels (a box 3 px wide would be read that way too).
    data = np.moveaxis(data, channel_axis, 2)
    image = Image.frombytes("RGB", (data.shape[1], data.shape[0]), np.ascontiguousarray(data).tobytes())
    return np.array(image.resize((res, res), resample=Image.BILINEAR))


CROP_STRIP_BYTES = 32 << 20  # large boxes are cut and resized in strips of about this many bytes
CROP_DIRECT_PIXELS = 1 << 22  # boxes up to this area go through the original's canvas directly


def _box_region(img: np.ndarray, ul, br):
    """(canvas rows, canvas cols, image rows, image cols) of the part of the box that lies on the image."""
    height, width = img.shape[:2]
    new_x = max(0, -ul[0]), min(br[0], width) - ul[0]
    new_y = max(0, -ul[1]), min(br[1], height) - ul[1]
    old_x = max(0, ul[0]), min(width, br[0])
    old_y = max(0, ul[1]), min(height, br[1])
    return new_y, new_x, old_y, old_x


def crop(image_rgb_uint8: np.ndarray, center, scale: float, res: int = C.IMG_RES) -> np.ndarray:
    """SPIN's `crop(img, center, scale, (res, res))` -> uint8 (res, res, 3).

    The box (side 200*scale px around `center`) is copied into a black canvas, contrast-stretched to [0, 255]
    (scipy's imresize byte-scales float input: a quirk the published weights were trained with) and resized with
    Pillow's antialiased bilinear filter.

    Memory stays bounded for any box: the stretch is a per-value lookup table (the canvas holds integers), and a
    large box is cut in strips, each resized horizontally by Pillow, then the stacked strips vertically. Pillow
    resizes in exactly these two passes (horizontal first, rounding to uint8 in between), so the result is the same
    bytes as one resize of the whole canvas (tested against the direct path).
    """
    img = np.asarray(image_rgb_uint8)
    if img.ndim != 3 or img.shape[2] != 3:
        raise ValueError(f"crop expects an (H, W, 3) RGB image, got shape {img.shape}")
    if not (np.isfinite(scale) and np.isfinite(np.asarray(center, dtype=np.float64)).all()):
        raise ValueError(f"crop box is not finite: center={tuple(center)} scale={scale}")
    ul, br = crop_box(center, scale, res)
    height, width = img.shape[:2]
    if br[0] - ul[0] < 1 or br[1] - ul[1] < 1:
        raise ValueError(f"crop box is empty for center={tuple(center)} scale={scale}")
    if ul[0] >= width or ul[1] >= height or br[0] <= 0 or br[1] <= 0:
        raise ValueError(f"crop box {tuple(ul)}-{tuple(br)} does not overlap the {width}x{height} image")
    box_h, box_w = int(br[1] - ul[1]), int(br[0] - ul[0])
    new_y, new_x, old_y, old_x = _box_region(img, ul, br)
    if box_h * box_w <= CROP_DIRECT_PIXELS or 3 in (box_h, box_w):  # (a 3-px side changes imresize's axes)
        canvas = np.zeros((box_h, box_w, 3))
        canvas[new_y[0]:new_y[1], new_x[0]:new_x[1]] = img[old_y[0]:old_y[1], old_x[0]:old_x[1]]
        return _imresize_rgb(canvas, res)
    return _crop_in_strips(img, (box_h, box_w), new_y, new_x, old_y, old_x, res)


def _crop_in_strips(img, box_hw, new_y, new_x, old_y, old_x, res: int) -> np.ndarray:
    box_h, box_w = box_hw
    region = img[old_y[0]:old_y[1], old_x[0]:old_x[1]]
    padded = region.shape[0] < box_h or region.shape[1] < box_w
    cmin, cmax = np.float64(region.min()), np.float64(region.max())
    if padded:  # the black canvas around the image takes part in the stretch
        cmin, cmax = min(cmin, np.float64(0)), max(cmax, np.float64(0))
    lut = _bytescale_lut(cmin, cmax)
    rows_per_strip = max(1, CROP_STRIP_BYTES // (box_w * 3))
    strips = []
    for y0 in range(0, box_h, rows_per_strip):
        y1 = min(box_h, y0 + rows_per_strip)
        strip = np.full((y1 - y0, box_w, 3), lut[0], dtype=np.uint8)
        a, b = max(y0, new_y[0]), min(y1, new_y[1])
        if a < b:
            source = img[old_y[0] + a - new_y[0]: old_y[0] + b - new_y[0], old_x[0]:old_x[1]]
            strip[a - y0:b - y0, new_x[0]:new_x[1]] = lut[source]
        image = Image.frombytes("RGB", (box_w, y1 - y0), strip.tobytes())
        strips.append(np.asarray(image.resize((res, y1 - y0), resample=Image.BILINEAR)))
    middle = np.ascontiguousarray(np.concatenate(strips))
    image = Image.frombytes("RGB", (res, box_h), middle.tobytes())
    return np.array(image.resize((res, res), resample=Image.BILINEAR))


def normalize_crop(crop_u8, device=None) -> torch.Tensor:
    """uint8 (..., H, W, 3) RGB crops (array or tensor) -> float32 (..., 3, H, W) ImageNet-normalised tensor (true
    division), computed on `device` (default: where a tensor input is; the CPU for an array): the crops cross to a
    GPU once, as bytes, and are normalised there."""
    x = crop_u8 if isinstance(crop_u8, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(crop_u8))
    if device is not None:
        x = x.to(device, non_blocking=True)
    x = x.float() / 255.0
    x = x.movedim(-1, -3)
    mean = torch.tensor(C.IMG_NORM_MEAN, dtype=torch.float32, device=x.device).view(3, 1, 1)
    std = torch.tensor(C.IMG_NORM_STD, dtype=torch.float32, device=x.device).view(3, 1, 1)
    return (x - mean) / std


def denormalize_to_bgr255(images: torch.Tensor) -> np.ndarray:
    """ImageNet-normalised (B, 3, H, W) RGB -> float32 (B, H, W, 3) BGR in [0, 255], OpenPose's input convention."""
    mean = torch.tensor(C.IMG_NORM_MEAN, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(C.IMG_NORM_STD, dtype=images.dtype, device=images.device).view(1, 3, 1, 1)
    rgb01 = images * std + mean
    return np.ascontiguousarray((rgb01.permute(0, 2, 3, 1).flip(-1) * 255).cpu().numpy())


def centered_box(height: int, width: int) -> tuple[tuple[int, int], float]:
    """The demo's box for an already cropped, centred person: centre (W//2, H//2), scale max(H, W)/200."""
    return (width // 2, height // 2), max(height, width) / C.BOX_SCALE_PX
