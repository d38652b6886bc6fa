"""ED between SPIN and OpenPose (`ed`: the pure functions the estimators were trained on) and the `extract` job that
computes ED, SE and confidence arrays over a dataset (`extract`)."""

from .ed import RelativeED, demo_ed, normalize, op_spine, person_points, relative_ed, select_person  # noqa: F401
