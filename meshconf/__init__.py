"""meshconf: where is a single-image human mesh wrong?

SPIN predicts an SMPL mesh from a person crop; OpenPose detects 2D keypoints on the same crop; the per-joint distance
between them (ED) feeds classifiers that say whether the mesh is accurate and which joint is worst.
"""

__version__ = "0.1.0"

from .errors import MeshconfError  # noqa: E402,F401
from .engine.inference import ImageResult, MeshConfidence, PersonResult  # noqa: E402,F401
