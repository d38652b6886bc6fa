"""The one model layer: every job gets its networks here, on one device, in one precision, as one typed bundle.

    models = load_models({"spin", "smpl", "body"}, data_dir, device="auto", precision="float32")

What it does the same way for every job: finds the files through `meshconf.assets` (one message naming every
missing file), loads them with the safe loaders, folds SPIN's BatchNorms (channels-last; same outputs to float
rounding, faster), puts everything on the device chosen by `runtime.resolve_device`, applies the precision
(bfloat16 for both networks' convolutions; SMPL, decoding and the estimators stay float32/float64), and sets the
backend switches once (`runtime.configure_torch`: TF32 off unless asked). Gendered SMPL models load on demand.
`settings()` is what a resumable job binds its chunks to.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..assets import catalog as assets

PARTS = ("spin", "smpl", "body", "estimator", "segmentation", "regressor_h36m")
PART_ASSETS = {"spin": ("spin_checkpoint",), "smpl": ("smpl_neutral", "J_regressor_extra"),
               "body": ("openpose_body",), "segmentation": ("part_segmentation",),
               "regressor_h36m": ("J_regressor_h36m",), "estimator": ()}
DEMO_PARTS = frozenset({"spin", "smpl", "body", "estimator", "segmentation"})


@dataclass
class Models:
    """What a job runs: the loaded parts, their files, the device and precision."""

    spin: object = None
    smpl: object = None
    body: object = None
    estimator: object = None
    segmentation: dict | None = None
    paths: dict[str, str] = field(default_factory=dict)
    regressor_h36m: object = None  # (17, 6890) float32 tensor on the device
    device: object = "cpu"
    precision: str = "float32"
    tf32: bool = False
    data_dir: str | None = None
    estimator_name: str | None = None
    gendered: dict = field(default_factory=dict)
    compiled: tuple = ()  # the parts compiled with frozen weights (meshconf.accel): "spin", "body"

    def smpl_for(self, gender: str):
        """(SMPL layer of that gender, whether it is the neutral stand-in): loaded once, on the bundle's device."""
        from ..models import load_smpl

        gender = gender if gender in ("male", "female") else "neutral"
        if gender == "neutral":
            return self.smpl, False
        if gender not in self.gendered:
            path = assets.locate(f"smpl_{gender}", self.data_dir)
            if path:
                self.paths[f"smpl_{gender}"] = path
            self.gendered[gender] = (load_smpl(path, self.paths["J_regressor_extra"], gender, device=self.device)
                                     if path else None)
        found = self.gendered[gender]
        return (found, False) if found is not None else (self.smpl, True)

    def files(self) -> dict[str, str]:
        """Model files whose contents decide the numbers (the estimator's too, when loaded from a file)."""
        keys = {"spin_checkpoint": "spin", "openpose_body": "openpose", "smpl_neutral": "smpl",
                "J_regressor_extra": "J_regressor_extra", "J_regressor_h36m": "J_regressor_h36m",
                "smpl_male": "smpl_male", "smpl_female": "smpl_female"}
        out = {short: self.paths[name] for name, short in keys.items() if name in self.paths}
        if self.estimator_name and os.path.isfile(self.estimator_name):
            out["estimator"] = self.estimator_name
        return out

    def settings(self, files: dict | None = None) -> dict:
        """SHA-256 of the model files, numerics version, precision and device class: for `ChunkStore.bind`."""
        from ..files.chunks import model_settings

        return {**model_settings(self.files() if files is None else files, self.precision, str(self.device)),
                "tf32": self.tf32, "compiled": sorted(self.compiled)}

    def describe(self) -> dict:
        """For reports and manifests: where the numbers came from and how they were computed."""
        return {"device": str(self.device), "precision": self.precision, "tf32": self.tf32, "compiled": sorted(self.compiled),
                "files": {k: os.path.abspath(v) for k, v in self.files().items()},
                "estimator": self.estimator_name}


def needed_assets(parts, checkpoint=None) -> list[str]:
    names = [n for part in PARTS if part in parts for n in PART_ASSETS[part]]
    return [n for n in names if not (checkpoint and n == "spin_checkpoint")]


def require_files(parts, data_dir=None, checkpoint=None, offline: bool = False,
                  progress: bool = True) -> dict[str, str]:
    """Paths of what `parts` need. Missing public files are fetched first (unless `offline`); what is still
    missing ends in one line per file (nothing is loaded here)."""
    from ..errors import MeshconfError

    from ..engine.fetching import ensure

    paths = ensure(needed_assets(parts, checkpoint), data_dir, offline_flag=offline, progress=progress)
    if checkpoint:
        if not os.path.isfile(checkpoint):
            raise MeshconfError(f"--checkpoint {checkpoint}: no such file")
        paths["spin_checkpoint"] = os.fspath(checkpoint)
    return paths


def load_models(parts=DEMO_PARTS, data_dir=None, checkpoint=None, estimator: str = "default", device="auto",
                precision: str = "float32", tf32: bool = False, fixed_shapes: bool = False, threads: int | None = None,
                offline: bool = False, compile=False) -> Models:
    """Load `parts` (a subset of `PARTS`) for one device and precision. `compile`: True compiles both networks with frozen
    weights (`meshconf.accel`), or name the parts ("spin", "body"); the jobs decide with `accel.compiled_parts`."""
    import torch

    from ..runtime import configure_torch, resolve_device, torch_dtype

    torch_dtype(precision)  # one-line error for an unknown precision, before anything loads
    parts = set(parts)
    compile = ("spin", "body") if compile is True else tuple(sorted(set(compile or ()) & {"spin", "body"}))
    unknown = parts - set(PARTS)
    if unknown:
        raise ValueError(f"unknown model parts {sorted(unknown)}; known: {PARTS}")
    paths = require_files(parts, data_dir, checkpoint, offline)
    device = resolve_device(device) if isinstance(device, str) or device is None else torch.device(device)
    configure_torch(device, tf32=tf32, fixed_shapes=fixed_shapes, threads=threads)
    models = Models(paths=paths, device=device, precision=precision, tf32=tf32, data_dir=data_dir,
                    estimator_name=estimator if "estimator" in parts else None,
                    compiled=tuple(p for p in compile if p in parts))
    if "spin" in parts:
        from ..models.hmr import load_spin, to_precision
        from ..models.resnet import fold_batchnorm

        if "spin" in compile:  # load_spin folds, converts and compiles
            models.spin = load_spin(paths["spin_checkpoint"], device, precision, compile=True)
        else:  # folded in float32, then converted: folding in bfloat16 would round the folded weights twice
            models.spin = to_precision(fold_batchnorm(load_spin(paths["spin_checkpoint"], device), copy=False),
                                       precision)
    if "smpl" in parts:
        from ..models import load_smpl

        models.smpl = load_smpl(paths["smpl_neutral"], paths["J_regressor_extra"], device=device)
    if "body" in parts:
        from ..openpose import load_body

        models.body = load_body(paths["openpose_body"], device, precision=precision,
                                compile="body" in compile)
    if "estimator" in parts:
        from ..classifier import load as load_estimator

        models.estimator = load_estimator(estimator)
    if "segmentation" in parts:
        from ..demo.render import load_segmentation

        models.segmentation = load_segmentation(paths["part_segmentation"])
    if "regressor_h36m" in parts:
        from ..models.smpl import load_regressor

        regressor = load_regressor(paths["J_regressor_h36m"], "J_regressor_h36m")
        models.regressor_h36m = torch.from_numpy(regressor).float().to(device)
    return models
