"""`AnnotatedCrops`: SPIN's evaluation crop of each annotated person, with its ground truth in crop pixels."""

from __future__ import annotations

import os

import numpy as np
import torch

from .. import constants as C
from .. import geometry
from ..errors import MeshconfError
from ..files.imageio import file_digest, read_bgr_digest
from .annotations import Annotations, load_annotations


MAX_BOX_FACTOR = 4  # a box more than 4x the image's longer side is an annotation error (and would cost GBs)


class AnnotatedCrops(torch.utils.data.Dataset):
    """item i -> dict(index, crop (224,224,3) uint8 RGB, joints2d (14,2) and spine2d (2,) in crop px (SPIN's
    integer `transform`, as the original computed its ground truth))."""

    def __init__(self, annotations, image_root):
        self.annotations = annotations if isinstance(annotations, Annotations) else load_annotations(annotations)
        self.image_root = os.fspath(image_root)

    def __len__(self) -> int:
        return len(self.annotations)

    def box_problem(self, i: int, image_hw) -> str | None:
        """Why row i's box cannot be cropped from an image of `image_hw`, or None. Such a row is skipped (NaN in
        the arrays, named in the manifest), not a reason to stop a whole dataset."""
        center, scale = np.asarray(self.annotations.center[i], np.float64), float(self.annotations.scale[i])
        if not np.isfinite(center).all():
            return f"box centre {center.tolist()} is not finite"
        if not np.isfinite(scale) or scale <= 0:
            return f"box scale {scale} is not a positive number"
        side = scale * C.BOX_SCALE_PX
        height, width = image_hw
        if side > MAX_BOX_FACTOR * max(height, width):
            return (f"box scale {scale:g} makes a {side:.0f} px box, more than {MAX_BOX_FACTOR}x the "
                    f"{width}x{height} image")
        ul, br = geometry.crop_box(center, scale)
        if br[0] <= 0 or br[1] <= 0 or ul[0] >= width or ul[1] >= height:
            return f"box around centre {center.round(1).tolist()} does not overlap the {width}x{height} image"
        return None

    def __getitem__(self, i: int) -> dict:
        a = self.annotations
        try:
            image, digest = read_bgr_digest(self.image_path(i))
        except MeshconfError as exc:
            raise MeshconfError(f"{exc} (row {i} of the annotations; is --images the right folder?)") from None
        problem = self.box_problem(i, image.shape[:2])
        if problem is not None:  # a placeholder row: the job fills it with NaN and names it in the manifest
            nan = np.full((C.NUM_J14, 2), np.nan)
            return {"index": i, "crop": np.zeros((C.IMG_RES, C.IMG_RES, 3), np.uint8), "joints2d": nan,
                    "spine2d": np.full(2, np.nan), "box_px": np.nan, "image_sha": digest, "problem": problem}
        center, scale = a.center[i], float(a.scale[i])
        crop = geometry.crop(image[:, :, ::-1], center, scale)

        def to_crop(points):
            out = np.full(np.shape(points), np.nan)
            for k, p in enumerate(np.reshape(points, (-1, 2))):
                if np.isfinite(p).all():
                    out.reshape(-1, 2)[k] = geometry.transform_point(p, center, scale)
            return out

        return {"index": i, "crop": crop, "joints2d": to_crop(a.joints2d[i]), "spine2d": to_crop(a.spine2d[i]),
                "box_px": scale * C.BOX_SCALE_PX, "image_sha": digest, "problem": ""}

    def image_path(self, i: int) -> str:
        return os.path.join(self.image_root, str(self.annotations.imgname[i]))

    def image_digest(self, i: int) -> str:
        """The content hash row i's image has now (what a resumed job compares with the one stored per row)."""
        return file_digest(self.image_path(i))


def collate(items: list[dict]) -> dict:
    return {"index": np.array([it["index"] for it in items]), "crop": np.stack([it["crop"] for it in items]),
            "joints2d": np.stack([it["joints2d"] for it in items]), "spine2d": np.stack([it["spine2d"] for it in items]),
            "box_px": np.array([it.get("box_px", np.nan) for it in items], np.float64),
            **({"image_sha": np.array([it["image_sha"] for it in items], dtype="<U16")}
               if all("image_sha" in it for it in items) else {}),
            "skipped": np.array([bool(it.get("problem")) for it in items]),
            "problem": np.array([it.get("problem", "") for it in items], dtype=str)}


def skip_rows(result: dict, batch: dict) -> dict:
    """A job's per-row arrays with the skipped rows of `batch` set to NaN (float arrays) and flagged."""
    skipped = np.asarray(batch.get("skipped", np.zeros(len(batch["index"]), bool)))
    out = dict(result)
    for key, value in result.items():
        if key != "index" and isinstance(value, np.ndarray) and value.dtype.kind == "f" and len(value) == len(skipped):
            value = value.copy()
            value[skipped] = np.nan
            out[key] = value
    out["skipped"] = skipped
    return out
