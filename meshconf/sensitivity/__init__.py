"""Occlusion sensitivity of SPIN and OpenPose: which occluded image regions change each model's output."""

from .image import GridResult, openpose_sensitivity, procrustes, spin_sensitivity  # noqa: F401
from ..dataset.occlusion import Grid, joint_window, occluded_copies, parse_fill  # noqa: F401
