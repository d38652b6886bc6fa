"""v2's network module: the parts it evaluates and the six numbers that combine them (`meshconf.classifier.v2`
fits them; this module only evaluates, so loading needs neither scikit-learn nor the training code)."""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
from torch import nn

from ..errors import MeshconfError
from .calibration import BOUND_EPS
from .forest import Forest, forest_features


@dataclass
class Parts:
    """What each part predicts for a batch of rows, before the combination."""

    net_mc: torch.Tensor  # (N,) network mesh logit
    net_wj: torch.Tensor  # (N, 14) network worst-joint log-probabilities
    net_err: torch.Tensor  # (N, 14) network per-joint error
    tree_err: torch.Tensor  # (N, 14) regressors' per-joint error
    log_fine: torch.Tensor  # (N,) sum_j log(1 - P(joint j off by more than 0.1))
    mesh: torch.Tensor  # (N,) mesh-level classifier logit

    @classmethod
    def cat(cls, parts: list["Parts"]) -> "Parts":
        return cls(*(torch.cat([getattr(p, f.name) for p in parts]) for f in fields(cls)))

    def subset(self, index) -> "Parts":
        return Parts(*(getattr(self, f.name)[index] for f in fields(self)))


class V2(nn.Module):
    def __init__(self, network: nn.Module, error: Forest, joint_bad: Forest, mesh: Forest):
        super().__init__()
        self.network, self.error, self.joint_bad, self.mesh = network, error, joint_bad, mesh
        self.register_buffer("blend", torch.ones((), dtype=torch.float64))
        self.register_buffer("wj_coef", torch.tensor([1.0, 0.0], dtype=torch.float64))
        self.register_buffer("stack", torch.tensor([1.0, 0.0, 0.0, 0.0], dtype=torch.float64))
        self.register_buffer("n_signals", torch.zeros((), dtype=torch.int64))  # trees' extra inputs (--signals)

    def parts(self, ed: torch.Tensor, conf: torch.Tensor, signals: torch.Tensor | None = None) -> Parts:
        if int(self.n_signals) and (signals is None or signals.shape[1] != int(self.n_signals)):
            raise MeshconfError(f"this estimator was trained with {int(self.n_signals)} extracted signals per row "
                                f"(`meshconf extract --signals`); pass them (signals=, or <set>_signals.npy beside "
                                f"the arrays); the demo computes ED and confidence only")
        mc, wj, err = self.network(ed, conf)
        x = forest_features(ed, conf, signals if int(self.n_signals) else None)
        p_bad = torch.sigmoid(self.joint_bad(x))
        return Parts(mc.double(), torch.log_softmax(wj.double(), 1), err.double(), self.error(x),
                     torch.log(torch.clamp(1 - p_bad, min=1e-12)).sum(1), self.mesh(x)[:, 0])

    def combine(self, p: Parts) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        err = torch.clamp(self.blend * p.tree_err + (1 - self.blend) * p.net_err, min=0)
        wj = self.wj_coef[0] * p.net_wj + self.wj_coef[1] * torch.log(err + BOUND_EPS)
        s = self.stack
        logit = s[0] * p.net_mc + s[1] * p.log_fine + s[2] * p.mesh + s[3]
        return logit, wj, err

    def forward(self, ed, conf, signals=None):
        return self.combine(self.parts(ed, conf, signals))
