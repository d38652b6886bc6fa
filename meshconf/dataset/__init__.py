"""Datasets: one documented annotation format and a torch Dataset that reads it back with SPIN's evaluation crop.

Readers for the datasets as published write this format: `pw3d.read_3dpw`, `oh3d.read_3doh`, `h36m.read_h36m`
(plus `h36m.extract_frames`). Nothing here runs at import.
"""

from .annotations import Annotations, load_annotations, save_annotations  # noqa: F401
from .crops import AnnotatedCrops  # noqa: F401
