"""ED tables: reading the (N, 14) arrays, labels, the original filters, and seeded, saved splits.

Array layout (`meshconf.sp_op.arrays`; one set = three files with a common prefix, e.g. `3dpw_occ_train`):
`<prefix>_sp_op.npy` ED, `<prefix>_sp_gt.npy` SE (labels only), `<prefix>_conf.npy` OpenPose score per joint,
all (N, 14) in J14 order and normalised units (1.0 = 112 px).
"""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

import numpy as np

from .. import constants as C
from ..errors import MeshconfError
from ..files.fileio import atomic_path, parse_json, write_json
from ..sp_op.arrays import CORE
from ..sp_op.arrays import SUFFIXES as ARRAY_SUFFIXES

SUFFIXES = {key: ARRAY_SUFFIXES[key] for key in CORE}
SIGNALS_SUFFIX = ARRAY_SUFFIXES["signals"]  # optional: `meshconf extract --signals`


@dataclass
class EDSet:
    """One named set of samples. `rows` are the indices into the source arrays (for tracing back to images)."""

    name: str
    ed: np.ndarray  # (N, 14)
    conf: np.ndarray  # (N, 14)
    se: np.ndarray | None = None  # (N, 14), None when there is no ground truth
    rows: np.ndarray = field(default=None)
    source: np.ndarray = field(default=None)  # (N,) source set name per row
    signals: np.ndarray | None = None  # (N, S) `meshconf.sp_op.signals` columns, when extracted with --signals

    def __post_init__(self):
        n = len(self.ed)
        if self.signals is not None and (self.signals.ndim != 2 or len(self.signals) != n):
            raise MeshconfError(f"set {self.name}: signals have shape {self.signals.shape}, expected ({n}, S)")
        for key in ("ed", "conf") + (("se",) if self.se is not None else ()):
            arr = getattr(self, key)
            if arr.ndim != 2 or arr.shape != (n, C.NUM_J14):
                raise MeshconfError(f"set {self.name}: {key} has shape {arr.shape}, expected ({n}, 14)")
        if self.rows is None:
            self.rows = np.arange(n)
        if self.source is None:
            self.source = np.full(n, self.name)

    def __len__(self):
        return len(self.ed)

    def subset(self, index, name=None) -> "EDSet":
        return EDSet(name or self.name, self.ed[index], self.conf[index],
                     None if self.se is None else self.se[index], self.rows[index], self.source[index],
                     None if self.signals is None else self.signals[index])

    @property
    def label_m(self) -> np.ndarray:
        return mesh_label(self.se)

    @property
    def label_wj(self) -> np.ndarray:
        return worst_joint_label(self.se)


def mesh_label(se: np.ndarray) -> np.ndarray:
    """1 = accurate: every joint's SE at most 0.1 (11.2 px). The one definition of "accurate": the training label,
    the calibration label and the ground truth every report shows."""
    return (np.asarray(se).max(axis=1) <= C.ACCURATE_SE_THRESHOLD).astype(np.int64)


def row_is_accurate(se_row: np.ndarray) -> bool:
    """`mesh_label` of one row whose unknown joints (NaN) are left out."""
    return bool(mesh_label(np.nan_to_num(np.asarray(se_row, np.float64), nan=0.0)[None])[0])


def worst_joint_label(se: np.ndarray) -> np.ndarray:
    return se.argmax(axis=1).astype(np.int64)


def original_filter(ed_set: EDSet) -> np.ndarray:
    """Training filters of the original (SPEC §2.8): hips and neck detected (conf >= 0.1) and no SE above 1."""
    conf, se = ed_set.conf, ed_set.se
    keep = ((conf[:, C.J14_R_HIP] >= C.TRAIN_MIN_CONF) & (conf[:, C.J14_L_HIP] >= C.TRAIN_MIN_CONF)
            & (conf[:, C.J14_NECK] >= C.TRAIN_MIN_CONF))
    return keep & ~(se > C.TRAIN_MAX_SE).any(axis=1)


MANIFEST_SUFFIX = "_manifest.json"  # written by `meshconf extract` after its arrays


def check_manifest(folder, prefix: str, log=print) -> None:
    """A set with a manifest is read only as the set that was written together (every array's SHA-256, and not
    mid-write); a set without one (the original's files) is read as it is, with a note."""
    from ..files.fileio import verify_manifest

    path = os.path.join(folder, prefix + MANIFEST_SUFFIX)
    if not os.path.isfile(path):
        log(f"note: {prefix} has no manifest (arrays not written by meshconf extract); read as they are")
        return
    try:
        with open(path) as fh:
            manifest = parse_json(fh)
        if not isinstance(manifest, dict):
            raise ValueError("not a JSON object")
    except (OSError, ValueError) as exc:
        raise MeshconfError(f"{path} is not a readable manifest ({exc}); extract the arrays again") from None
    verify_manifest(manifest, os.fspath(folder), path)


def load_set(folder, prefix: str, need_se: bool = True, drop_nonfinite: bool = False, log=print) -> EDSet:
    """A set's arrays. Non-finite values (NaN, inf) are refused with the file, the array and the first bad row,
    or with `drop_nonfinite` those rows are left out (and counted): they would poison normalisation and fits.
    The set's manifest, where there is one, must vouch for the arrays (`check_manifest`)."""
    check_manifest(folder, prefix, log)
    arrays = {}
    for key, suffix in SUFFIXES.items():
        path = os.path.join(folder, prefix + suffix)
        if not os.path.isfile(path):
            if key == "se" and not need_se:
                arrays[key] = None
                continue
            raise MeshconfError(f"missing {path}: a set needs {prefix}_sp_op.npy, {prefix}_conf.npy"
                                f"{' and ' + prefix + '_sp_gt.npy' if need_se else ''}")
        try:
            arrays[key] = np.load(path, allow_pickle=False).astype(np.float64)
        except (ValueError, OSError, EOFError, TypeError) as exc:
            raise MeshconfError(f"cannot read {path} ({exc})") from None
        shape = arrays[key].shape
        if len(shape) != 2 or shape[1] != C.NUM_J14 or shape[0] == 0:
            raise MeshconfError(f"{path} has shape {shape}; a set's arrays are (N, {C.NUM_J14}) with N >= 1 rows "
                                f"(as meshconf extract writes them)")
        if shape[0] != len(arrays["ed"]):
            raise MeshconfError(f"{path} has {shape[0]} rows, {prefix}_sp_op.npy {len(arrays['ed'])}: the arrays "
                                f"of one set must have one row per crop each")
    signals_path = os.path.join(folder, prefix + SIGNALS_SUFFIX)
    signals = _load_signals(signals_path, len(arrays["ed"])) if os.path.isfile(signals_path) else None
    result = EDSet(prefix, arrays["ed"], arrays["conf"], arrays["se"], signals=signals)
    bad = np.zeros(len(result), bool)
    for key, suffix in list(SUFFIXES.items()) + [("signals", SIGNALS_SUFFIX)]:
        array = signals if key == "signals" else arrays[key]
        if array is None:
            continue
        rows = ~np.isfinite(array).all(axis=1)
        if rows.any() and not drop_nonfinite:
            first = int(np.flatnonzero(rows)[0])
            raise MeshconfError(f"{os.path.join(folder, prefix + suffix)}: array {key} holds NaN or infinite values "
                                f"in {int(rows.sum())} rows (first: row {first}); fix the arrays or pass "
                                f"--drop-nonfinite to leave those rows out")
        bad |= rows
    if bad.all():
        raise MeshconfError(f"{prefix} in {folder}: every row holds NaN or infinite values; nothing to use")
    if bad.any():
        log(f"note: {prefix}: {int(bad.sum())} of {len(result)} rows hold non-finite values and were left out")
        result = result.subset(np.flatnonzero(~bad))
    return result


def _load_signals(path: str, n: int) -> np.ndarray:
    from ..sp_op.signals import NUM_SIGNALS

    try:
        signals = np.load(path, allow_pickle=False).astype(np.float64)
    except (ValueError, OSError, EOFError) as exc:
        raise MeshconfError(f"cannot read {path} ({exc})") from None
    if signals.shape != (n, NUM_SIGNALS):
        raise MeshconfError(f"{path} has shape {signals.shape}, expected ({n}, {NUM_SIGNALS}) "
                            f"(meshconf.sp_op.signals.SIGNAL_COLUMNS); extract it again with this version")
    return signals


def find_sets(folder, pattern: str = "*") -> list[str]:
    """Set prefixes in a folder (every `<prefix>_sp_op.npy` with its `_conf.npy`)."""
    if not os.path.isdir(folder):
        raise MeshconfError(f"data folder not found: {folder}")
    prefixes = sorted(os.path.basename(p)[: -len(SUFFIXES["ed"])]
                      for p in glob.glob(os.path.join(folder, pattern + SUFFIXES["ed"])))
    return [p for p in prefixes if os.path.isfile(os.path.join(folder, p + SUFFIXES["conf"]))]


def concat(sets: list[EDSet], name: str) -> EDSet:
    """One set of several; signals are kept only when every set has them."""
    signals = None if any(s.signals is None for s in sets) else np.concatenate([s.signals for s in sets])
    return EDSet(name, np.concatenate([s.ed for s in sets]), np.concatenate([s.conf for s in sets]),
                 np.concatenate([s.se for s in sets]), np.concatenate([s.rows for s in sets]),
                 np.concatenate([s.source for s in sets]), signals)


@dataclass
class Prepared:
    """A seeded split of every source into train/val; filters are masks, so all recipes share the same split."""

    train: EDSet
    val: EDSet
    seed: int
    counts: dict
    split: dict = field(default_factory=dict)
    pool: EDSet | None = None  # every row of every source (no purge), for block cross-validation
    pool_fold: np.ndarray | None = None  # (len(pool),) fold of each row; fold 0 = the validation blocks

    def original(self, part: str) -> EDSet:
        """The rows the original recipe trains on (its filters applied)."""
        s = getattr(self, part)
        return s.subset(np.flatnonzero(original_filter(s)), part)

    def sane(self, part: str) -> EDSet:
        """Every row with usable ground truth (SE <= 1): what meshconf's estimator trains on."""
        s = getattr(self, part)
        return s.subset(np.flatnonzero(~(s.se > C.TRAIN_MAX_SE).any(axis=1)), part)

    @property
    def ed_mean(self) -> np.ndarray:
        return self.original("train").ed.mean(axis=0)

    @property
    def ed_var(self) -> np.ndarray:
        # The original prints torch.var (unbiased) over its training CSV and uses it as "STD".
        return self.original("train").ed.var(axis=0, ddof=1)


def split_rows(n: int, rng, val_fraction: float, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of range(n). block=1: frame level, as the original; block>1: contiguous runs of `block` rows
    go together, so consecutive video frames (rows keep the dataset's order) do not land on both sides."""
    starts = rng.permutation(np.arange(0, n, block))
    n_val = int(round(val_fraction * n))
    val, size = [], 0
    for s in starts:
        if size >= n_val:
            break
        run = np.arange(s, min(s + block, n))
        val.append(run)
        size += len(run)
    val = np.sort(np.concatenate(val)) if val else np.zeros(0, np.int64)
    train = np.setdiff1d(np.arange(n), val)
    return train, val


def purge_rows(train: np.ndarray, val: np.ndarray, purge: int) -> np.ndarray:
    """Train rows farther than `purge` rows from every validation row: neighbouring video frames are near copies,
    so the frames next to a validation block must not train the model that block validates."""
    if purge <= 0 or not len(val):
        return train
    near = np.zeros(int(max(train.max(initial=0), val.max()) + purge + 2), bool)
    for offset in range(-purge, purge + 1):
        shifted = val + offset
        near[shifted[(shifted >= 0) & (shifted < len(near))]] = True
    return train[~near[train]]


def block_folds(n: int, val: np.ndarray, block: int, folds: int, seed: int) -> np.ndarray:
    """Fold of each of n rows: the validation blocks are fold 0, the other blocks go round-robin, in a seeded
    order, to folds 1..folds-1. Its own generator, so the train/validation split stays what it was."""
    fold = np.zeros(n, np.int64)
    starts = np.arange(0, n, block)
    in_val = np.isin(starts, val)
    rest = np.random.default_rng([seed, 17]).permutation(starts[~in_val])
    for i, start in enumerate(rest):
        fold[start:start + block] = 1 + i % max(folds - 1, 1)
    fold[val] = 0
    return fold


def cv_split(pool: EDSet, fold: np.ndarray, k: int, purge: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of `pool` to fit on and rows to predict for fold k: the fold's rows are held out, and so are the rows
    within `purge` frames of them in the same frames (paired sources count as one sequence of frames)."""
    held = np.flatnonzero(fold == k)
    fit = np.zeros(len(pool), bool)
    fit[fold != k] = True
    keys = np.array([pair_key(str(n)) for n in pool.source])
    for key in np.unique(keys):
        mine = keys == key
        held_frames = pool.rows[mine & (fold == k)]
        other = np.flatnonzero(mine & (fold != k))
        if purge and len(held_frames):
            kept = purge_rows(pool.rows[other], held_frames, purge)
            fit[other] = np.isin(pool.rows[other], kept)
    return np.flatnonzero(fit), held


def pair_key(name: str) -> str:
    """Sources that are the same frames row for row (3dpw_train and 3dpw_occ_train) share one split."""
    return name.replace("_occ", "")


def prepare(sets: list[EDSet], seed: int = 0, val_fraction: float = 0.2, block: int = 1,
            purge: int = 0, folds: int = 5) -> Prepared:
    """Split each source with a seeded generator (the original: unseeded, frame level), concatenate, shuffle.

    `block` > 1 keeps contiguous runs of rows (video frames) together, `purge` drops train rows within that many
    rows of a validation row, and sources that are the same frames (`pair_key`, equal length) share their split,
    so the clean and the occluded copy of a frame are always on the same side: a leak-free validation split.
    Every row also gets one of `folds` block folds (fold 0 = validation), for cross-validation."""
    rng = np.random.default_rng(seed)
    train_parts, val_parts, counts, fold_parts = [], [], {}, []
    shared: dict[tuple, tuple] = {}
    for s in sets:
        key = (pair_key(s.name), len(s))
        if key not in shared:
            # a small source still gets at least 10 blocks, so that both sides of the split are populated
            size = min(block, max(1, len(s) // 10))
            gap = min(purge, size // 4) if size < block else purge
            train_idx, val_idx = split_rows(len(s), rng, val_fraction, size)
            shared[key] = (purge_rows(train_idx, val_idx, gap), val_idx, len(train_idx), size, gap,
                           block_folds(len(s), val_idx, size, folds, seed))
        train_idx, val_idx, before_purge, size, gap, fold = shared[key]
        fold_parts.append(fold)
        n_val = len(val_idx)
        val_parts.append(s.subset(val_idx))
        train_parts.append(s.subset(train_idx))
        kept = original_filter(s)
        counts[s.name] = {"rows": len(s), "original_filter_kept": int(kept.sum()),
                          "train": len(train_idx), "val": n_val, "purged": before_purge - len(train_idx),
                          "block": int(size), "purge": int(gap),
                          "split_shared_with": sorted(o.name for o in sets if (pair_key(o.name), len(o)) == key)}
    train = concat(train_parts, "train")
    val = concat(val_parts, "val")
    train = train.subset(rng.permutation(len(train)), "train")
    val = val.subset(rng.permutation(len(val)), "val")
    return Prepared(train, val, seed, counts, {"block": block, "purge": purge, "val_fraction": val_fraction,
                                               "folds": folds}, concat(sets, "pool"), np.concatenate(fold_parts))


def save_prepared(p: Prepared, out_dir) -> None:
    """Tables (npz, plus the original's CSV columns) and the split (source + row per sample), atomically."""
    os.makedirs(out_dir, exist_ok=True)
    for part in (p.train, p.val):
        _atomic_savez(os.path.join(out_dir, f"{part.name}.npz"), **_arrays(part))
        # The original's CSV (its filters applied, raw ED and its three label columns), for comparison.
        orig = p.original(part.name)
        header = ",".join([f"sp_op_{j}" for j in range(14)] + ["label_m", "label_wj", "label_c"])
        label_c = np.where(orig.label_m == 1, 14, orig.label_wj)
        table = np.column_stack([orig.ed, orig.label_m, orig.label_wj, label_c])
        fmt = ["%.10g"] * 14 + ["%d"] * 3
        _atomic_write(os.path.join(out_dir, f"all_{part.name}.csv"),
                      lambda fh, t=table: np.savetxt(fh, t, delimiter=",", header=header, comments="", fmt=fmt))
    if p.pool is not None:
        _atomic_savez(os.path.join(out_dir, "pool.npz"), **_arrays(p.pool), fold=p.pool_fold)
    signals = p.pool is not None and p.pool.signals is not None
    meta = {"seed": p.seed, "counts": p.counts, "signals": signals, "ed_mean": p.ed_mean.tolist(), "ed_var": p.ed_var.tolist(),
            "original_filters": "conf[R hip], conf[L hip], conf[neck] >= 0.1 and every SE <= 1",
            "split": {**p.split, "how": "per source (paired sources share it), numpy default_rng(seed); `rows` index "
                      "the source arrays, `source` names them; val.npz holds the validation rows; pool.npz every row "
                      "with its block fold (fold 0 = validation, the other blocks round-robin in a seeded order)"}}
    write_json(os.path.join(out_dir, "prepared.json"), meta)


def load_prepared(folder) -> Prepared:
    meta_path = os.path.join(folder, "prepared.json")
    if not os.path.isfile(meta_path):
        raise MeshconfError(f"{folder} holds no prepared tables (prepared.json); run `meshconf prepare` first")
    try:
        with open(meta_path) as fh:
            meta = parse_json(fh)
        seed, counts = meta["seed"], meta["counts"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise MeshconfError(f"{meta_path} is not a readable prepared.json ({exc!r}); run `meshconf prepare` "
                            "again") from None
    parts = {name: _read_part(os.path.join(folder, f"{name}.npz"), name) for name in ("train", "val")}
    split = meta.get("split") if isinstance(meta.get("split"), dict) else {}
    pool = fold = None
    pool_path = os.path.join(folder, "pool.npz")
    if os.path.isfile(pool_path):  # folders prepared without cross-validation folds have none
        pool, fold = _read_part(pool_path, "pool", with_fold=True)
    return Prepared(parts["train"], parts["val"], seed, counts, split, pool, fold)


PREPARED_KEYS = ("ed", "conf", "se", "rows", "source")


def _read_part(path: str, name: str, with_fold: bool = False):
    """One prepared table, checked: every key, (N, 14) finite arrays with one row each."""
    again = "; run `meshconf prepare` again"
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in PREPARED_KEYS + (("fold",) if with_fold else ()) if k not in z.files]
            if missing:
                raise MeshconfError(f"{path} lacks {', '.join(missing)}{again}")
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as exc:
        raise MeshconfError(f"cannot read {path} ({exc}){again}") from None
    n = len(arrays["ed"]) if arrays["ed"].ndim else 0
    for key in ("ed", "conf", "se"):
        a = arrays[key]
        if a.ndim != 2 or a.shape != (n, C.NUM_J14) or n == 0 or a.dtype.kind not in "fiu":
            raise MeshconfError(f"{path}: {key} has shape {a.shape}, expected ({max(n, 1)}+, {C.NUM_J14}){again}")
        if not np.isfinite(a).all():
            raise MeshconfError(f"{path}: {key} holds NaN or infinite values{again} (it leaves such rows out)")
    for key in ("rows", "source") + (("fold",) if with_fold else ()):
        if arrays[key].shape != (n,):
            raise MeshconfError(f"{path}: {key} has shape {arrays[key].shape}, expected ({n},){again}")
    part = _from_arrays(name, arrays)
    return (part, arrays["fold"]) if with_fold else part


def _arrays(s: EDSet) -> dict:
    out = dict(ed=s.ed, conf=s.conf, se=s.se, rows=s.rows, source=s.source.astype(str))
    return out if s.signals is None else {**out, "signals": s.signals}


def _from_arrays(name: str, z) -> EDSet:
    return EDSet(name, z["ed"], z["conf"], z["se"], z["rows"], z["source"], z.get("signals"))


def _atomic_write(path, writer) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            writer(fh)


def _atomic_savez(path, **arrays) -> None:
    _atomic_write(path, lambda fh: np.savez_compressed(fh, **arrays))
