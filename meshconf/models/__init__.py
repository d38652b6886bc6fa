"""Model definitions and their safe, strict loaders."""

from .hmr import HMR, load_spin  # noqa: F401
from .smpl import SMPLOutput, load_smpl  # noqa: F401
