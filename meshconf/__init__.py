"""meshconf: where is a single-image human mesh wrong?

SPIN predicts an SMPL mesh from a person crop; OpenPose detects 2D keypoints on the same crop; the per-joint distance
between them (ED) feeds classifiers that say whether the mesh is accurate and which joint is worst.
"""

from .constants import VERSION as __version__  # noqa: F401
from .engine.inference import ImageResult, MeshConfidence, PersonResult  # noqa: F401
from .errors import MeshconfError  # noqa: F401
