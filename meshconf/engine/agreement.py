"""How far bfloat16 results are from float32 ones: the same crops analysed by both, compared where a user would
notice (is `--precision bfloat16` safe for my images and my weights?).

Pure functions on two lists of `pipeline.CropAnalysis` (float32 first, then bfloat16, same crops in the same
order). Used by `meshconf check-precision` on the user's images and weights, and by the speed benchmark on the
recipe weights, whose hundreds of spurious peaks make them a stress case.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .. import constants as C
from ..classifier.calibration import accepted

SHIFT_PX = 1.0  # a keypoint "agrees" when it moved by at most this much


@dataclass
class PrecisionAgreement:
    crops: int
    keypoints: int  # keypoints of the matched OpenPose person present in float32 (18 per person at most)
    within_1px: float  # share of those present in bfloat16 too, at most SHIFT_PX away
    max_shift_px: float  # largest move of a keypoint present in both
    keypoints_lost: int  # present in float32, missing in bfloat16
    keypoints_gained: int  # missing in float32, present in bfloat16
    people_changed: int  # crops where OpenPose assembled another number of people
    person_changed: int  # crops where ED was measured against a different OpenPose person (or none)
    ed_diff_px_mean: list[float]  # (14,) mean |ED_bf16 - ED_fp32| per joint, px of the 224 crop
    ed_diff_px_max: list[float]  # (14,)
    p_accurate_diff_max: float
    threshold: float
    decisions_flipped: int  # crops accepted by one precision and rejected by the other at `threshold`
    worst_joint_changed: int  # crops whose most likely worst joint differs
    bound_diff_px_max: float | None = None  # largest change of a per-joint error bound (v2 estimators)

    def as_dict(self) -> dict:
        return asdict(self)

    def lines(self) -> list[str]:
        def share(count: int) -> str:
            return f"{count}/{self.crops} ({100 * count / max(self.crops, 1):.1f}%)"

        names = C.J14_NAMES
        worst = int(np.argmax(self.ed_diff_px_max)) if self.crops else 0
        out = [f"keypoints within {SHIFT_PX:g} px: {100 * self.within_1px:.2f}% of {self.keypoints} "
               f"(largest move {self.max_shift_px:.2f} px; {self.keypoints_lost} lost, {self.keypoints_gained} "
               f"gained)",
               f"people count changed: {share(self.people_changed)}; matched person changed: "
               f"{share(self.person_changed)}",
               f"ED difference per joint: mean {np.mean(self.ed_diff_px_mean):.3f} px, largest "
               f"{max(self.ed_diff_px_max, default=0):.2f} px ({names[worst]})",
               f"P(accurate): largest change {self.p_accurate_diff_max:.4f}; decisions at {self.threshold:.3f} "
               f"flipped: {share(self.decisions_flipped)}; worst joint changed: {share(self.worst_joint_changed)}"]
        if self.bound_diff_px_max is not None:
            out.append(f"per-joint error bounds: largest change {self.bound_diff_px_max:.2f} px")
        return out


def compare(reference: list, candidate: list, threshold: float = 0.5) -> PrecisionAgreement:
    """`reference` (float32) against `candidate` (bfloat16) analyses of the same crops."""
    from ..openpose import people

    if len(reference) != len(candidate):
        raise ValueError(f"{len(reference)} float32 analyses against {len(candidate)} bfloat16 ones")
    px = C.NORM_UNIT_PX
    shifts, lost, gained, people_changed, person_changed = [], 0, 0, 0, 0
    flipped, worst_changed = 0, 0
    ed_diff, p_diff, bound_diff = [], [0.0], []
    for a, b in zip(reference, candidate):
        pa, pb = people(a.candidate, a.subset), people(b.candidate, b.subset)
        people_changed += len(pa) != len(pb)
        ia, ib = a.relative.person, b.relative.person
        person_changed += ia != ib
        if ia >= 0:
            ka = pa[ia].keypoints
            kb = pb[ib].keypoints if ib >= 0 else np.zeros_like(ka)
            both = (ka[:, 3] > 0) & (kb[:, 3] > 0)
            lost += int(((ka[:, 3] > 0) & ~(kb[:, 3] > 0)).sum())
            gained += int((~(ka[:, 3] > 0) & (kb[:, 3] > 0)).sum())
            shifts.extend(np.linalg.norm(ka[both, :2] - kb[both, :2], axis=1).tolist())
        elif ib >= 0:
            gained += int((pb[ib].keypoints[:, 3] > 0).sum())
        ed_diff.append(np.abs(np.asarray(b.ed, np.float64) - np.asarray(a.ed, np.float64)) * px)
        p_diff.append(abs(b.p_accurate - a.p_accurate))
        flipped += bool(accepted(a.p_accurate, threshold) != accepted(b.p_accurate, threshold))
        worst_changed += int(np.argmax(a.worst_joint_prob)) != int(np.argmax(b.worst_joint_prob))
        if a.joint_error_bound is not None and b.joint_error_bound is not None:
            bound_diff.append(float(np.abs(b.joint_error_bound - a.joint_error_bound).max()) * px)
    ed_diff = np.array(ed_diff).reshape(-1, C.NUM_J14)
    ed_diff = np.where(np.isfinite(ed_diff), ed_diff, 0.0)
    shifts = np.array(shifts)
    present = len(shifts) + lost
    return PrecisionAgreement(
        crops=len(reference), keypoints=present,
        within_1px=float((shifts <= SHIFT_PX).sum() / present) if present else 1.0,
        max_shift_px=float(shifts.max()) if len(shifts) else 0.0, keypoints_lost=lost, keypoints_gained=gained,
        people_changed=int(people_changed), person_changed=int(person_changed),
        ed_diff_px_mean=ed_diff.mean(0).round(4).tolist() if len(ed_diff) else [0.0] * C.NUM_J14,
        ed_diff_px_max=ed_diff.max(0).round(4).tolist() if len(ed_diff) else [0.0] * C.NUM_J14,
        p_accurate_diff_max=float(max(p_diff)), threshold=float(threshold), decisions_flipped=int(flipped),
        worst_joint_changed=int(worst_changed), bound_diff_px_max=max(bound_diff) if bound_diff else None)
