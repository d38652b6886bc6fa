"""`meshconf convert-classifier classifier.pt classifier_wj.pt OUT.safetensors`: the original's own trained mesh
classifier (MC) and worst-joint classifier (WJC), plain state dicts saved with `torch.save` (often on CUDA), as a
meshconf estimator (`--estimator OUT.safetensors` in every job).

The files are read with `torch.load(weights_only=True, map_location="cpu")`: nothing in them runs. ED is standardised
with the original's constants (`constants.SP_OP_NORM_MEAN`/`_VAR`, the values its trainers printed and pasted),
unless `--prepared P` (the statistics `meshconf prepare` stored) or `--mean`/`--var` say otherwise.
"""

from __future__ import annotations

import os

from .. import constants as C
from ..errors import MeshconfError
from ..files.fileio import parse_json


def add_arguments(parser) -> None:
    parser.add_argument("mc", help="the original's classifier.pt (mesh classifier, Model(14, 10, 8, 6, 1))")
    parser.add_argument("wj", help="the original's classifier_wj.pt (worst-joint classifier, Model(14, 28, 56, 28, 14))")
    parser.add_argument("out", help="output .safetensors")
    parser.add_argument("--prepared", help="take the ED mean/variance from this `meshconf prepare` folder")
    parser.add_argument("--mean", nargs=14, type=float, help="ED mean per joint (default: the original's constants)")
    parser.add_argument("--var", nargs=14, type=float, help="ED variance per joint (default: the original's)")


def convert(mc_path, wj_path, mean=None, var=None):
    """An `Estimator` of kind "original" from the two state-dict files."""
    import numpy as np
    import torch

    from ..models.checkpoint import check_state_dict, read_torch_file, unwrap_state_dict
    from ..classifier.models import Estimator, OriginalModels

    mean = C.SP_OP_NORM_MEAN if mean is None else mean
    var = C.SP_OP_NORM_VAR if var is None else var
    if not (np.isfinite(mean).all() and np.isfinite(var).all() and (np.asarray(var) > 0).all()):
        raise MeshconfError("--mean must be finite and --var finite and positive")
    models = OriginalModels(mean, var)
    for path, net, what in ((mc_path, models.mc, "mesh classifier (classifier.pt)"),
                            (wj_path, models.wj, "worst-joint classifier (classifier_wj.pt)")):
        state = unwrap_state_dict(read_torch_file(path, what), path, what)
        state = {k: v.detach().to("cpu", torch.float32) if v.dtype in (torch.float32, torch.float64) else v
                 for k, v in state.items()}
        check_state_dict(state, {k: tuple(v.shape) for k, v in net.state_dict().items()}, path, what)
        net.load_state_dict(state)
    return Estimator(models.eval(), "original", {"source": "converted from the original's trained classifiers",
                                                 "mc": os.path.abspath(mc_path), "wj": os.path.abspath(wj_path),
                                                 "ed_mean": list(map(float, mean)), "ed_var": list(map(float, var))})


def run(args) -> int:
    mean, var = args.mean, args.var
    if args.prepared:
        path = os.path.join(args.prepared, "prepared.json")
        try:
            with open(path) as fh:
                meta = parse_json(fh)
            mean, var = meta["ed_mean"], meta["ed_var"]
        except (OSError, ValueError, KeyError) as exc:
            raise MeshconfError(f"{path}: no ED statistics ({exc}); run `meshconf prepare` first") from None
    estimator = convert(args.mc, args.wj, mean, var)
    if not args.out.endswith(".safetensors"):
        raise MeshconfError(f"{args.out}: the output must be a .safetensors file")
    estimator.save(args.out)
    print(f"wrote {args.out}: use it with --estimator {args.out}")
    return 0
