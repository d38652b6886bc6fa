"""Training both estimators on a prepared split, seeded and with per-epoch history.

The original recipe is kept as published (SPEC §2.9): MC with SGD (lr 0.1, momentum 0.9), BCE, 20 epochs, batch 32;
WJC with Adam (lr 1e-4), cross-entropy, 60 epochs, batch 32; the last epoch's weights. What is fixed: seeds, and
accuracy divided by the number of samples (not batches x batch size).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn
from tqdm import tqdm

from .data import EDSet, Prepared
from .models import Ensemble, Estimator, MeshConfNet, OriginalModels, meshconfnet_features


@dataclass
class History:
    """Per-epoch curves of one model: {"train_loss": [...], "val_loss": [...], "train_acc": [...], ...}."""

    name: str
    curves: dict = field(default_factory=lambda: {k: [] for k in ("train_loss", "val_loss", "train_acc", "val_acc")})
    held_out_label: str = "validation"

    def add(self, **values):
        for k, v in values.items():
            self.curves[k].append(float(v))


def tensors(s: EDSet):
    return (torch.tensor(s.ed, dtype=torch.float32), torch.tensor(s.conf, dtype=torch.float32),
            torch.tensor(s.se, dtype=torch.float32), torch.tensor(s.label_m, dtype=torch.float32),
            torch.tensor(s.label_wj, dtype=torch.long))


def _epochs(model, loss_fn, optimizer, train, val, epochs, batch, gen, history, correct_fn, desc, progress,
            scheduler=None):
    n = len(train[0])
    for _ in tqdm(range(epochs), desc=desc, disable=None if progress else True, leave=False):
        model.train()
        order = torch.randperm(n, generator=gen)
        total_loss, total_correct = 0.0, 0
        for s in range(0, n, batch):
            idx = order[s:s + batch]
            items = [t[idx] for t in train]
            optimizer.zero_grad()
            out = model(items)
            loss = loss_fn(out, items)
            loss.backward()
            optimizer.step()
            total_loss += loss.item() * len(idx)
            total_correct += int(correct_fn(out, items).sum())
        if scheduler is not None:
            scheduler.step()
        model.eval()
        if val is None:  # a final fit on every row: nothing held out to score
            history.add(train_loss=total_loss / n, train_acc=total_correct / n)
            continue
        with torch.no_grad():
            out = model(val)
            val_loss = loss_fn(out, val).item()
            val_correct = int(correct_fn(out, val).sum())
        history.add(train_loss=total_loss / n, val_loss=val_loss, train_acc=total_correct / n,
                    val_acc=val_correct / len(val[0]))


class _Head(nn.Module):
    """Adapts a (ed, conf, se, label_m, label_wj) batch to one of the original MLPs."""

    def __init__(self, models: OriginalModels, which: str):
        super().__init__()
        self.models, self.which = models, which

    def forward(self, items):
        z = self.models.standardize(items[0])
        return torch.sigmoid(self.models.mc(z).squeeze(-1)) if self.which == "mc" else self.models.wj(z)


def train_original(prep: Prepared, seed: int = 0, epochs_mc: int = 20, epochs_wj: int = 60, batch: int = 32,
                   progress: bool = True) -> tuple[Estimator, list[History]]:
    torch.manual_seed(seed)
    models = OriginalModels(prep.ed_mean, prep.ed_var)
    train, val = tensors(prep.original("train")), tensors(prep.original("val"))
    gen = torch.Generator().manual_seed(seed)
    h_mc, h_wj = History("mesh classifier (MC)"), History("worst-joint classifier (WJC)")
    bce = nn.BCELoss()
    mc = _Head(models, "mc")
    _epochs(mc, lambda out, it: bce(out, it[3]),
            torch.optim.SGD(models.mc.parameters(), lr=0.1, momentum=0.9), train, val, epochs_mc, batch, gen, h_mc,
            lambda out, it: (out > 0.5).float() == it[3], "MC (original)", progress)
    wj = _Head(models, "wj")
    ce = nn.CrossEntropyLoss()
    _epochs(wj, lambda out, it: ce(out, it[4]), torch.optim.Adam(models.wj.parameters(), lr=1e-4), train, val,
            epochs_wj, batch, gen, h_wj, lambda out, it: out.argmax(1) == it[4], "WJC (original)", progress)
    meta = {"recipe": "original (arXiv 2305.17245 / meshConfidence)", "seed": seed,
            "epochs": {"mc": epochs_mc, "wj": epochs_wj}, "batch": batch, "train_rows": len(train[0]),
            "val_rows": len(val[0]), "ed_mean": prep.ed_mean.tolist(), "ed_var": prep.ed_var.tolist()}
    return Estimator(models, "original", meta), [h_mc, h_wj]


class _NetAdapter(nn.Module):
    def __init__(self, net: MeshConfNet):
        super().__init__()
        self.net = net

    def forward(self, items):
        return self.net.raw(items[0], items[1])


# SE is ~0.1, so its squared error needs weight to matter next to the two classification losses. 100 was chosen
# over 20 (weaker per-joint correlation) and 400 (the error head collapsed to a constant).
ERR_WEIGHT = 100.0


def _multitask_loss(out, items):
    mc, wj, err = out
    se = items[2].clamp(max=1.0)
    return (nn.functional.binary_cross_entropy_with_logits(mc, items[3]) + nn.functional.cross_entropy(wj, items[4])
            + ERR_WEIGHT * nn.functional.mse_loss(err, se))


def _fit_temperature(logits: torch.Tensor, target: torch.Tensor, binary: bool) -> float:
    """Temperature that minimises held-out NLL (calibration without changing the ranking)."""
    log_t = torch.zeros((), requires_grad=True)
    opt = torch.optim.LBFGS([log_t], lr=0.1, max_iter=100)

    def closure():
        opt.zero_grad()
        scaled = logits / log_t.exp()
        loss = (nn.functional.binary_cross_entropy_with_logits(scaled, target) if binary
                else nn.functional.cross_entropy(scaled, target))
        loss.backward()
        return loss

    opt.step(closure)
    return float(log_t.detach().exp())


def train_meshconfnet(prep: Prepared, seed: int = 0, members: int = 5, epochs: int = 8, batch: int = 256,
                      lr: float = 2e-3, hidden: int = 256, progress: bool = True) -> tuple[Estimator, list[History]]:
    """An ensemble of `members` networks seeded seed, seed+1, ..., each trained and calibrated on the same split."""
    train_set, val_set = prep.sane("train"), prep.sane("val")
    train, val = tensors(train_set), tensors(val_set)
    nets, histories = [], []
    for k in range(members):
        net, history = train_member(train, val, seed + k, epochs, batch, lr, hidden, progress,
                                  desc=f"member {k + 1}/{members}")
        history.name = f"meshconf network, member {k + 1}/{members}"
        nets.append(net)
        histories.append(history)
    meta = {"recipe": "meshconf multi-task ensemble (ED, log ED, OpenPose confidence, missing flags)",
            "seed": seed, "members": members, "epochs": epochs, "batch": batch, "lr": lr, "hidden": hidden,
            "error_loss_weight": ERR_WEIGHT, "train_rows": len(train[0]), "val_rows": len(val[0]),
            "train_filter": "rows with SE > 1 (degenerate ground truth) dropped; nothing else",
            "temperature": {"mc": [float(n.t_mc) for n in nets], "wj": [float(n.t_wj) for n in nets]}}
    return Estimator(Ensemble(nets), "meshconfnet", meta), histories


def train_member(train, val, seed, epochs, batch, lr, hidden, progress, desc: str = "meshconfnet",
               temperature: bool = True) -> tuple[MeshConfNet, History]:
    """One member. `temperature`: fit the two temperatures on `val` (v1); v2 leaves them at 1, since its stacker
    rescales the logits on out-of-fold predictions."""
    torch.manual_seed(seed)
    net = MeshConfNet(hidden)
    feats = meshconfnet_features(train[0], train[1])
    net.feat_mean.copy_(feats.mean(0))
    net.feat_std.copy_(feats.std(0).clamp(min=1e-3))
    model = _NetAdapter(net)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    history = History("meshconf multi-task network")
    gen = torch.Generator().manual_seed(seed)
    _epochs(model, _multitask_loss, opt, train, val, epochs, batch, gen, history,
            lambda out, it: (out[0] > 0).float() == it[3], desc, progress, scheduler=sched)
    net.eval()
    if temperature:
        with torch.no_grad():
            mc, wj, _ = net.raw(val[0], val[1])
        net.t_mc.fill_(_fit_temperature(mc, val[3], binary=True))
        net.t_wj.fill_(_fit_temperature(wj, val[4], binary=False))
    return net, history


def stack_with_trees(network: Estimator, prep: Prepared, seed: int = 0, progress: bool = True) -> Estimator:
    """The default estimator: per-joint boosted trees fitted on the training split, stacked with the network's
    calibrated mesh logit by a logistic regression fitted on the held-out split (no row is used twice)."""
    from .trees import GB_PARAMS, Stacked, fit_joint_trees, fit_stack

    trees = fit_joint_trees(prep.sane("train"), seed=seed, progress=progress)
    stacked = Stacked(network.net, trees)
    fit_stack(stacked, prep.sane("val"))
    meta = dict(network.metadata)
    meta.update(recipe="meshconf stack: per-joint gradient-boosted trees (P(joint error > 0.1)) and the multi-task "
                       "network ensemble; P(accurate) = logistic(log prod(1 - p_j), network logit)",
                trees={**GB_PARAMS, "models": 14, "seed": seed, "nodes": int(trees.feature.numel())},
                stack_coefficients=[float(c) for c in stacked.coef])
    return Estimator(stacked.eval(), "meshconfstack", meta)
