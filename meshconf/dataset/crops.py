"""`AnnotatedCrops`: SPIN's evaluation crop of each annotated person, with its ground truth in crop pixels."""

from __future__ import annotations

import os

import numpy as np
import torch

from .. import constants as C
from .. import geometry
from ..errors import MeshconfError
from ..imageio import file_digest, read_bgr_digest
from .annotations import Annotations, load_annotations


class AnnotatedCrops(torch.utils.data.Dataset):
    """item i -> dict(index, crop (224,224,3) uint8 RGB, joints2d (14,2) and spine2d (2,) in crop px (SPIN's
    integer `transform`, as the original computed its ground truth))."""

    def __init__(self, annotations, image_root):
        self.annotations = annotations if isinstance(annotations, Annotations) else load_annotations(annotations)
        self.image_root = os.fspath(image_root)

    def __len__(self) -> int:
        return len(self.annotations)

    def __getitem__(self, i: int) -> dict:
        a = self.annotations
        try:
            image, digest = read_bgr_digest(self.image_path(i))
        except MeshconfError as exc:
            raise MeshconfError(f"{exc} (row {i} of the annotations; is --images the right folder?)") from None
        center, scale = a.center[i], float(a.scale[i])
        crop = geometry.crop(image[:, :, ::-1], center, scale)

        def to_crop(points):
            out = np.full(np.shape(points), np.nan)
            for k, p in enumerate(np.reshape(points, (-1, 2))):
                if np.isfinite(p).all():
                    out.reshape(-1, 2)[k] = geometry.transform_point(p, center, scale)
            return out

        return {"index": i, "crop": crop, "joints2d": to_crop(a.joints2d[i]), "spine2d": to_crop(a.spine2d[i]),
                "box_px": scale * C.BOX_SCALE_PX, "image_sha": digest}

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
               if all("image_sha" in it for it in items) else {})}
