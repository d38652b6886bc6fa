"""The error estimators: the paper's two MLPs (original recipe) and meshconf's multi-task network.

Both are wrapped in `Estimator`, whose `predict(ed, conf)` takes (N, 14) arrays in normalised units and returns a
`Prediction`. Weights are stored as safetensors with their normalisation statistics and metadata: loading them
never executes code.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import constants as C
from ..errors import MeshconfError
from ..files.fileio import atomic_path, parse_json
from .calibration import BOUND_EPS, recalibrated

ED_CLIP = 3.0  # ED is bounded by the crop (~2.9 observed); keeps a stray value from dominating


class MLP4(nn.Module):
    """meshConfidence's `Model(i, h1, h2, h3, o)`: three ReLU layers and a linear output (keys fc1..fc4)."""

    def __init__(self, sizes):
        super().__init__()
        i, h1, h2, h3, o = sizes
        self.fc1, self.fc2, self.fc3, self.fc4 = nn.Linear(i, h1), nn.Linear(h1, h2), nn.Linear(h2, h3), nn.Linear(h3, o)

    def forward(self, x):
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc4(torch.relu(self.fc3(x)))


MC_SIZES = (14, 10, 8, 6, 1)  # mesh classifier; sigmoid on the output
WJ_SIZES = (14, 28, 56, 28, 14)  # worst-joint classifier; softmax over the output


class OriginalModels(nn.Module):
    """The paper's MC and WJC on ED standardised as (ED - mean) / sqrt(var)."""

    def __init__(self, mean=C.SP_OP_NORM_MEAN, var=C.SP_OP_NORM_VAR):
        super().__init__()
        self.mc = MLP4(MC_SIZES)
        self.wj = MLP4(WJ_SIZES)
        self.register_buffer("ed_mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("ed_var", torch.tensor(var, dtype=torch.float32))

    def standardize(self, ed: torch.Tensor) -> torch.Tensor:
        return (ed - self.ed_mean) / torch.sqrt(self.ed_var)

    def forward(self, ed, conf=None):
        z = self.standardize(ed)
        return self.mc(z).squeeze(-1), self.wj(z), None


def meshconfnet_features(ed: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """Per sample: clipped ED, log ED, OpenPose confidence, missing-joint flags and a nobody-detected flag."""
    ed = ed.clamp(0, ED_CLIP)
    missing = (conf <= 0).to(ed.dtype)
    nobody = missing.all(dim=1, keepdim=True).to(ed.dtype)
    return torch.cat([ed, torch.log(ed + 0.01), conf, missing, nobody], dim=1)


N_FEATURES = 4 * C.NUM_J14 + 1


class MeshConfNet(nn.Module):
    """Multi-task estimator: mesh accuracy logit, worst-joint logits and per-joint error (normalised units).

    The per-joint error head gives a confidence per body part in pixels, not only a class; the two logits are
    temperature-calibrated on held-out training data.
    """

    def __init__(self, hidden: int = 256):
        super().__init__()
        self.register_buffer("feat_mean", torch.zeros(N_FEATURES))
        self.register_buffer("feat_std", torch.ones(N_FEATURES))
        self.register_buffer("t_mc", torch.ones(()))
        self.register_buffer("t_wj", torch.ones(()))
        self.body = nn.Sequential(nn.Linear(N_FEATURES, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                  nn.Linear(hidden, hidden // 2), nn.ReLU())
        self.mc = nn.Linear(hidden // 2, 1)
        self.wj = nn.Linear(hidden // 2, C.NUM_J14)
        self.err = nn.Linear(hidden // 2, C.NUM_J14)

    def raw(self, ed, conf):
        h = self.body((meshconfnet_features(ed, conf) - self.feat_mean) / self.feat_std)
        return self.mc(h).squeeze(-1), self.wj(h), nn.functional.softplus(self.err(h))

    def forward(self, ed, conf):
        mc, wj, err = self.raw(ed, conf)
        return mc / self.t_mc, wj / self.t_wj, err


class Ensemble(nn.Module):
    """Mean of several independently seeded MeshConfNets (logits and errors): steadier under dataset shift."""

    def __init__(self, members: list[MeshConfNet]):
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, ed, conf):
        outs = [m(ed, conf) for m in self.members]
        return tuple(torch.stack([o[i] for o in outs]).mean(0) for i in range(3))


@dataclass
class Prediction:
    p_accurate: np.ndarray  # (N,) probability that every joint is within 0.1 (11.2 px)
    worst_joint_prob: np.ndarray  # (N, 14) distribution of the worst joint
    joint_error: np.ndarray | None = None  # (N, 14) estimated SE, normalised units (x112 for pixels)
    joint_error_bound: np.ndarray | None = None  # (N, 14) upper bound at `Estimator.bound_coverage`, same units

    @property
    def accurate(self) -> np.ndarray:
        return self.p_accurate > 0.5


class Estimator:
    """A trained estimator with its metadata (training data, seed, metrics)."""

    def __init__(self, net: nn.Module, kind: str, metadata: dict | None = None):
        self.net = net.eval()
        self.kind = kind
        self.metadata = metadata or {}

    @property
    def predicts_joint_error(self) -> bool:
        return self.kind in ("meshconfnet", "meshconfstack", "meshconfv2")

    # ------------------------------------------------------------------------------------------- calibration
    @property
    def bound_coverage(self) -> float | None:
        """The coverage the per-joint bounds were calibrated for (0.9), None without bounds."""
        bounds = self.metadata.get("bounds")
        return None if not bounds else float(bounds["coverage"])

    @property
    def operating_points(self) -> list[tuple[float, float]]:
        """(precision of accepted meshes, threshold on P(accurate)) pairs, chosen on the calibration split."""
        return [(float(p), float(t)) for p, t in self.metadata.get("operating_points", [])]

    def threshold_for(self, precision: float) -> float:
        """The threshold on P(accurate) whose accepted meshes reached at least `precision` on the calibration
        split (the lowest such threshold, i.e. the most meshes accepted)."""
        points = [(p, t) for p, t in self.operating_points if p >= precision - 1e-12]
        if not points:
            reached = max((p for p, _ in self.operating_points), default=None)
            raise MeshconfError(f"this estimator has no operating point at precision {precision:g}"
                                + (f" (highest calibrated: {reached:g})" if reached is not None else
                                   " (it was not calibrated; see `meshconf train`)"))
        return min(points)[1]

    def accepts(self, p_accurate: float, precision: float) -> tuple[bool, float]:
        """(whether a mesh with this P(accurate) passes the operating point for `precision`, its threshold)."""
        threshold = self.threshold_for(precision)
        from .calibration import accepted

        return bool(accepted(p_accurate, threshold)), threshold

    def calibrate(self, ed, conf, se, coverage: float = 0.9, precisions=(0.8, 0.85, 0.9, 0.95),
                  eps: float = BOUND_EPS) -> dict:
        """Split-conformal per-joint bounds on a log scale and operating points, from a calibration split that the
        estimator was not trained on. Stored in the metadata (plain numbers), so they ship with the weights."""
        return self.calibrate_prediction(self.predict(ed, conf), se, coverage, precisions, eps)

    def calibrate_prediction(self, pred: Prediction, se, coverage: float = 0.9,
                             precisions=(0.8, 0.85, 0.9, 0.95), eps: float = BOUND_EPS, groups=None) -> dict:
        """`calibrate` from predictions made without the calibration rows (v2: out-of-fold predictions).

        `groups` (one name per row, e.g. the source set): calibrate so that the bounds' coverage and the operating
        points' precision hold within every group, not only on the pooled rows: per joint the largest group
        quantile, per target precision the largest group threshold (a target some group cannot reach is left
        out). The occluded copy of a dataset is a regime with fewer accurate meshes: a threshold fitted on the pool
        falls short there, as one fitted on 3DPW would on a harder dataset."""
        from .calibration import group_operating_points, group_quantiles
        from .data import mesh_label

        se = np.asarray(se, dtype=np.float64)
        labels = mesh_label(se)
        groups = np.zeros(len(se), dtype=int) if groups is None else np.asarray(groups)
        names = [str(g) for g in np.unique(groups)]
        how = "" if len(names) == 1 else f"; the largest over the calibration groups {names}"
        if pred.joint_error is not None:
            q = group_quantiles(pred.joint_error, se, groups, coverage, eps)
            self.metadata["bounds"] = {"coverage": coverage, "eps": eps, "log_quantile": q.tolist(),
                                       "method": "split-conformal on log(SE + eps) - log(estimate + eps), per joint"
                                                 + how, "calibration_rows": int(len(se))}
        self.metadata["operating_points"] = group_operating_points(pred.p_accurate, labels, groups, precisions)
        if len(names) > 1:
            self.metadata["operating_points_method"] = "the lowest threshold reaching the precision" + how
        return self.metadata

    @property
    def needs_signals(self) -> bool:
        """Whether predict() needs `signals` (a v2 trained on `extract --signals` arrays)."""
        return self.kind == "meshconfv2" and int(self.net.n_signals) > 0

    def predict(self, ed, conf=None, batch_size: int = 65536, signals=None) -> Prediction:
        ed = np.asarray(ed, dtype=np.float32)
        if ed.ndim == 1:
            ed = ed[None]
        if ed.ndim != 2 or ed.shape[1] != C.NUM_J14:
            raise MeshconfError(f"ed must have shape (N, 14), got {ed.shape}")
        if conf is None:
            if self.kind != "original":
                raise MeshconfError("this estimator needs the OpenPose confidences (conf, (N, 14))")
            conf = np.ones_like(ed)
        conf = np.asarray(conf, dtype=np.float32).reshape(ed.shape)
        ed = np.nan_to_num(ed, nan=ED_CLIP, posinf=ED_CLIP)
        if self.needs_signals and signals is not None:
            signals = np.asarray(signals, dtype=np.float32).reshape(len(ed), -1)
        outs = []
        with torch.no_grad():
            for s in range(0, len(ed), batch_size):
                extra = () if not self.needs_signals else (  # V2 refuses a missing array with one line
                    None if signals is None else torch.from_numpy(signals[s:s + batch_size]),)
                mc, wj, err = self.net(torch.from_numpy(ed[s:s + batch_size]), torch.from_numpy(conf[s:s + batch_size]),
                                       *extra)
                outs.append((torch.sigmoid(mc).numpy(), torch.softmax(wj, dim=1).numpy(),
                             None if err is None else err.numpy()))
        p = recalibrated(np.concatenate([o[0] for o in outs]).astype(np.float64), self.metadata.get("recalibration"))
        w = np.concatenate([o[1] for o in outs])
        e = None if outs[0][2] is None else np.concatenate([o[2] for o in outs]).astype(np.float64)
        return Prediction(p.astype(np.float64), w.astype(np.float64), e, self.bound_of(e))

    def bound_of(self, joint_error: np.ndarray | None) -> np.ndarray | None:
        """Per-joint upper bounds of estimated errors (None without calibrated bounds)."""
        bounds = self.metadata.get("bounds")
        if joint_error is None or not bounds:
            return None
        eps = float(bounds["eps"])
        return (joint_error + eps) * np.exp(np.asarray(bounds["log_quantile"], dtype=np.float64)) - eps

    def save(self, path) -> None:
        from safetensors.torch import save_file

        tensors = {k: v.detach().contiguous() for k, v in self.net.state_dict().items()}
        meta = {"kind": self.kind, "metadata": json.dumps(self.metadata)}
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata=meta)


def weights_digest(path) -> str:
    """SHA-256 over the tensors of a saved estimator (names, dtypes, shapes, bytes), not its metadata: what two
    machines compare to see whether they trained the same weights."""
    import hashlib

    from safetensors.numpy import load_file

    digest = hashlib.sha256()
    for key, value in sorted(load_file(path).items()):
        digest.update(f"{key}|{value.dtype}|{value.shape}|".encode())
        digest.update(value.tobytes())
    return digest.hexdigest()


def load_file(path) -> Estimator:
    """An estimator from a safetensors file written by `Estimator.save`."""
    from safetensors import safe_open

    path = os.fspath(path)
    if not os.path.isfile(path):
        raise MeshconfError(f"estimator weights not found: {path}")
    try:
        with safe_open(path, framework="pt") as fh:
            header = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as exc:  # safetensors raises its own error types for any malformed file
        raise MeshconfError(f"cannot read estimator weights {path} ({exc}); expected a meshconf .safetensors file")\
            from None
    try:
        with torch.device("meta"):  # the sizes the file declares, before any memory is spent on them
            declared, kind = _build(header.get("kind"), tensors, path)
        _check_sizes(declared, tensors, path, kind)
        net, kind = _build(header.get("kind"), tensors, path)
        metadata = parse_json(header.get("metadata", "{}"))
        if not isinstance(metadata, dict):
            raise ValueError("metadata is not a JSON object")
        _check_metadata(metadata)
    except (KeyError, IndexError, ValueError, AttributeError, TypeError, RecursionError) as exc:
        raise MeshconfError(f"{path} is not a valid meshconf estimator ({type(exc).__name__}: {exc}); retrain it or "
                            f"use a shipped one (--estimator default)") from None
    expected = net.state_dict()
    for key, tensor in tensors.items():
        if key in expected and tensor.dtype != expected[key].dtype:
            raise MeshconfError(f"{path}: tensor {key} is {str(tensor.dtype).replace('torch.', '')}, expected "
                                f"{str(expected[key].dtype).replace('torch.', '')}")
        # a perfect-tree forest's padding nodes hold +inf thresholds (every row goes left); nothing else may
        finite = tensor if not (kind == "meshconfv2" and key.endswith(".threshold")) else \
            tensor.masked_fill(tensor == float("inf"), 0)
        if tensor.is_floating_point() and not torch.isfinite(finite).all():
            raise MeshconfError(f"{path}: tensor {key} holds NaN or infinite values; the estimator is damaged")
    try:
        net.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise MeshconfError(f"{path} does not fit a {kind} estimator: {str(exc).splitlines()[0]}") from None
    return Estimator(net, kind, metadata)


MAX_TREE_DEPTH = 16  # the shipped trees have depth 4-5; a level-by-level walk of depth d holds 2^d leaves per tree


def _check_sizes(declared: nn.Module, tensors: dict, path: str, kind: str) -> None:
    """The network a file's shapes describe must be exactly the tensors it holds: a header claiming a hidden size of
    20 million (or a forest of depth 31) would otherwise allocate petabytes before the shapes are compared."""
    expected = {k: tuple(v.shape) for k, v in declared.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if expected != got:
        wrong = sorted(k for k in set(expected) | set(got) if expected.get(k) != got.get(k))
        raise MeshconfError(f"{path} does not fit a {kind} estimator: {wrong[0]} is "
                            f"{got.get(wrong[0], 'missing')}, its other tensors need {expected.get(wrong[0], 'none')}")


def _check_metadata(meta: dict) -> None:
    """The numbers a prediction uses from the metadata (bounds, operating points, recalibration) are numbers."""
    def number(value, what):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value):
            raise ValueError(f"{what} is not a finite number")

    bounds = meta.get("bounds")
    if bounds:
        if not isinstance(bounds, dict) or not isinstance(bounds.get("log_quantile"), list) \
                or len(bounds["log_quantile"]) != C.NUM_J14:
            raise ValueError("bounds.log_quantile is not a list of 14 numbers")
        for value in bounds["log_quantile"]:
            number(value, "a bounds.log_quantile entry")
        number(bounds.get("eps"), "bounds.eps")
        number(bounds.get("coverage"), "bounds.coverage")
    points = meta.get("operating_points", [])
    if not isinstance(points, list) or any(not isinstance(p, list) or len(p) != 2 for p in points):
        raise ValueError("operating_points is not a list of [precision, threshold] pairs")
    for precision, threshold in points:
        number(precision, "an operating point's precision")
        number(threshold, "an operating point's threshold")
    spec = meta.get("recalibration")
    if spec is not None:
        if not isinstance(spec, dict):
            raise ValueError("recalibration is not an object")
        recalibrated(np.array([0.5]), spec)  # raises on an unknown method or missing numbers
        for key in ("a", "b"):
            if key in spec:
                number(spec[key], f"recalibration.{key}")
        if spec.get("method") == "isotonic":
            x, y = (np.asarray(spec[k], np.float64) for k in ("x", "y"))
            if x.ndim != 1 or x.shape != y.shape or not (np.isfinite(x).all() and np.isfinite(y).all()) \
                    or (np.diff(x) < 0).any():
                raise ValueError("recalibration.x/y are not increasing finite steps of one length")


def _build(kind, tensors: dict, path: str):
    """The empty network a file's kind and tensor shapes describe."""
    if kind == "original":
        net = OriginalModels()
    elif kind == "meshconfnet":
        n_members = len({k.split(".")[1] for k in tensors if k.startswith("members.")})
        if not n_members:
            raise MeshconfError(f"{path} holds no network members")
        hidden = tensors["members.0.body.0.weight"].shape[0]
        net = Ensemble([MeshConfNet(hidden) for _ in range(n_members)])
    elif kind == "meshconfstack":
        from .trees import JointTrees, Stacked

        n_members = len({k.split(".")[2] for k in tensors if k.startswith("network.members.")})
        if not n_members or "trees.roots" not in tensors:
            raise MeshconfError(f"{path} holds no network members or no trees")
        hidden = tensors["network.members.0.body.0.weight"].shape[0]
        trees = JointTrees(len(tensors["trees.feature"]), tensors["trees.roots"].shape[1])
        net = Stacked(Ensemble([MeshConfNet(hidden) for _ in range(n_members)]), trees)
    elif kind == "meshconfv2":
        from .forest import Forest
        from .v2net import V2

        n_members = len({k.split(".")[2] for k in tensors if k.startswith("network.members.")})
        if not n_members:
            raise MeshconfError(f"{path} holds no network members")
        hidden = tensors["network.members.0.body.0.weight"].shape[0]
        forests = []
        for name in ("error", "joint_bad", "mesh"):
            nodes, models = tensors[f"{name}.feature"].shape[0], tensors[f"{name}.baseline"].shape[0]
            depth = int(np.log2(max(tensors[f"{name}.leaf"].shape[1], 1)))
            if not 1 <= depth <= MAX_TREE_DEPTH:
                raise ValueError(f"{name}: trees of depth {depth} (at most {MAX_TREE_DEPTH})")
            if models < 1 or nodes % models:
                raise ValueError(f"{name}: {nodes} trees do not split into {models} models")
            forests.append(Forest(models, nodes // models, depth))
        net = V2(Ensemble([MeshConfNet(hidden) for _ in range(n_members)]), *forests)
    else:
        raise MeshconfError(f"{path} is not a meshconf estimator (kind {kind!r})")
    return net, kind


# default = v2 (meshconf.classifier.v2): trees and network combined and calibrated out of fold, with per-joint
# bounds and operating points; v1: meshconf's first estimator (frame-level split, no bounds); original: the paper's recipe.
SHIPPED = {"default": "meshconf_v2.safetensors", "v2": "meshconf_v2.safetensors", "v1": "meshconfstack.safetensors",
           "original": "original.safetensors"}


def shipped_path(name: str) -> str:
    if name not in SHIPPED:
        raise MeshconfError(f"unknown estimator '{name}'; shipped: {', '.join(SHIPPED)} (or pass a file path)")
    return os.path.join(os.path.dirname(__file__), "weights", SHIPPED[name])


def load(name: str = "default") -> Estimator:
    """A shipped estimator ("default" = meshconf's v2, "v1" = meshconf's first estimator, "original" = the paper's recipe)
    or a weights file."""
    if name in SHIPPED:
        path = shipped_path(name)
        if not os.path.isfile(path):
            raise MeshconfError(f"the shipped '{name}' estimator is missing from the installation ({path}); "
                                f"reinstall meshconf or run `meshconf train`")
        return load_file(path)
    if os.path.isfile(name):
        return load_file(name)
    raise MeshconfError(f"unknown estimator '{name}'; shipped: {', '.join(SHIPPED)} (or pass a file path)")
