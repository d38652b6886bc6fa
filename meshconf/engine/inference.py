"""`MeshConfidence`: the library entry point, built once with the model choices and called with inputs.

    from meshconf import MeshConfidence

    mc = MeshConfidence(device="auto", precision="float32")        # loads SPIN, SMPL, OpenPose, the estimator
    results = mc.analyse(["photo.jpg"])                            # one ImageResult per image
    for person in results[0].people:
        print(person.box, person.analysis.p_accurate, person.analysis.worst_joint)
    crops = mc.analyse_crops([crop_rgb])                          # 224x224 RGB uint8 crops -> CropAnalysis

Init arguments choose the models (data folder, checkpoint, device, precision, estimator); call arguments are the
inputs (images or crops, boxes, batch size). `meshconf demo` is a thin job over this object: it writes what
`analyse` returns. Images are file paths or HxWx3 uint8 BGR arrays (OpenCV's order, as `cv2.imread` gives them).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import numpy as np

from ..errors import MeshconfError

DETECT_MAX_SIDE = 640  # px: person boxes are searched at most at this size (the network sees 184 rows anyway)



@dataclass
class PersonResult:
    box: object  # pipeline.Box
    analysis: object  # pipeline.CropAnalysis

    def to_dict(self) -> dict:
        return {"box": {"center": [float(v) for v in self.box.center], "scale": float(self.box.scale),
                        "source": self.box.source}, **self.analysis.to_dict()}


@dataclass(repr=False)
class ImageResult:
    name: str
    image_size: tuple[int, int]  # (width, height)
    people: list[PersonResult] = field(default_factory=list)
    person_detection_ms: float = 0.0

    def __repr__(self) -> str:
        p = ", ".join(f"{person.analysis.p_accurate:.2f}" for person in self.people)
        return (f"ImageResult(name={self.name!r}, image_size={self.image_size}, people={len(self.people)}, "
                f"p_accurate=[{p}])")

    def to_dict(self) -> dict:
        """JSON-ready: the image and each person's box and numbers (`json.dumps(result.to_dict())`)."""
        return {"name": self.name, "image_size": list(self.image_size),
                "person_detection_ms": self.person_detection_ms, "people": [p.to_dict() for p in self.people]}

    @property
    def boxes(self) -> list:
        return [p.box for p in self.people]

    @property
    def analyses(self) -> list:
        return [p.analysis for p in self.people]


def _as_image(item, index: int) -> tuple[str, np.ndarray]:
    from ..files.imageio import read_bgr, to_bgr_u8

    if isinstance(item, np.ndarray):
        return f"image {index}", to_bgr_u8(item, f"image {index}")
    return str(item), read_bgr(item)


def person_boxes(body, images_bgr: list[np.ndarray], boxes=None, cropped: bool = False,
                 max_people: int | None = None, batch_size: int = 16) -> list[list]:
    """Person boxes for each image: given (x, y, w, h per image, or one list of them), the whole image
    (`cropped`), or OpenPose on a copy of at most DETECT_MAX_SIDE px (SPIN's box rule)."""
    import cv2

    from .. import geometry
    from ..openpose import detect_batch
    from .pipeline import Box, box_from_xywh, boxes_from_people

    if cropped:
        out = []
        for image in images_bgr:
            center, scale = geometry.centered_box(*image.shape[:2])
            out.append([Box(tuple(float(v) for v in center), scale, "cropped")])
        return out
    if boxes is not None:
        out = []
        for image, image_boxes in zip(images_bgr, boxes):
            if isinstance(image_boxes, Box) or (len(image_boxes) == 4 and all(
                    isinstance(v, (int, float, np.number)) for v in image_boxes)):
                image_boxes = [image_boxes]  # one box for this image
            out.append([b if isinstance(b, Box) else box_from_xywh(*b) for b in image_boxes])
        return out
    # The decoder upsamples its maps to the full image (as the reference does): 57 float maps of a 12-megapixel
    # photo would take 3 GB. Boxes need far less resolution, so big images are searched at DETECT_MAX_SIDE.
    factors = [min(1.0, DETECT_MAX_SIDE / max(image.shape[:2])) for image in images_bgr]
    small = [image if f == 1.0 else cv2.resize(image, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
             for image, f in zip(images_bgr, factors)]
    detections = detect_batch(body, small, batch_size=batch_size)
    out = []
    for (candidate, subset), f in zip(detections, factors):
        candidate = np.array(candidate, dtype=np.float64).reshape(-1, 4)
        candidate[:, :2] /= f
        out.append(boxes_from_people(candidate, subset, max_people))
    return out


class MeshConfidence:
    """SPIN + SMPL + OpenPose + an error estimator, loaded once (see the module docstring)."""

    def __init__(self, data_dir=None, checkpoint=None, device="auto", precision="float32", estimator="default",
                 tf32: bool = False, threads: int | None = None, offline: bool = False, compile=False):
        from .bundle import DEMO_PARTS, load_models

        self.estimator = str(estimator)  # as reports state it
        self.models = load_models(DEMO_PARTS, data_dir, checkpoint, estimator, device=device, precision=precision,
                                  tf32=tf32, threads=threads, offline=offline, compile=compile)

    @property
    def device(self):
        return self.models.device

    @property
    def precision(self) -> str:
        return self.models.precision

    def analyse_crops(self, crops_rgb, legacy_ed: bool = False, batch_size: int = 16) -> list:
        """224x224 RGB uint8 crops -> one `CropAnalysis` each (SPIN, SMPL, OpenPose on the crop, ED, estimator)."""
        from .pipeline import analyse_crops

        return analyse_crops(self.models, list(crops_rgb), legacy_ed=legacy_ed, batch_size=batch_size)

    def save(self, result: ImageResult, folder, image=None, options=None, name: str | None = None, **choices) -> dict:
        """Write what `meshconf demo` writes for one analysed image into `folder` (pictures, meshes, report.json,
        index.html; see `meshconf.engine.outputs`) and return its report. `image`: the BGR array the result came
        from (read again from `result.name` when that is a path); `options` an `OutputOptions`, or its fields as
        keywords (render_res=448, renderer="auto", accept_precision=None)."""
        from ..files.imageio import read_bgr
        from .outputs import OutputOptions, write_image_result

        if options is None:
            options = OutputOptions(**{"estimator": self.estimator, **choices})
        if image is None:
            if not os.path.isfile(result.name):
                raise MeshconfError(f"{result.name!r} is not a file: pass the analysed image as save(..., image=)")
            image = read_bgr(result.name)
        return write_image_result(os.fspath(folder), image, result, self.models, options, name)

    def analyse(self, images, boxes=None, cropped: bool = False, max_people: int | None = None,
                legacy_ed: bool = False, batch_size: int = 16) -> list[ImageResult]:
        """Every person in each image. `boxes`: per image a list of (x, y, w, h) in px (or one box); `cropped`:
        each image is a crop with the person centred (the original demo's input); otherwise OpenPose finds the
        people (all of them by default, as the demo; or the `max_people` strongest)."""
        import time

        from .. import geometry

        if max_people is not None and max_people < 1:
            raise MeshconfError(f"max_people must be at least 1, got {max_people}")
        if isinstance(images, (str, np.ndarray)) or hasattr(images, "__fspath__"):
            images = [images]
        loaded = [_as_image(item, k) for k, item in enumerate(images)]
        names, arrays = [n for n, _ in loaded], [a for _, a in loaded]
        if boxes is not None and len(boxes) != len(arrays):
            raise MeshconfError(f"boxes: {len(boxes)} entries for {len(arrays)} images")
        start = time.perf_counter()
        image_boxes = person_boxes(self.models.body, arrays, boxes, cropped, max_people, batch_size)
        detect_ms = (time.perf_counter() - start) * 1e3 / max(len(arrays), 1)
        crops = []
        for name, image, found in zip(names, arrays, image_boxes):
            for box in found:
                try:
                    crops.append(geometry.crop(image[:, :, ::-1], box.center, box.scale))
                except ValueError as exc:
                    raise MeshconfError(f"{name}: cannot cut the person box ({exc})") from None
        analyses = iter(self.analyse_crops(crops, legacy_ed=legacy_ed, batch_size=batch_size))
        return [ImageResult(name, (int(image.shape[1]), int(image.shape[0])),
                            [PersonResult(box, next(analyses)) for box in found], round(detect_ms, 2))
                for name, image, found in zip(names, arrays, image_boxes)]
