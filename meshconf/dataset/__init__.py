"""Datasets: one documented annotation format and a torch Dataset that reads it back with SPIN's evaluation crop.

Readers for 3DPW, 3DOH50K and Human3.6M write this format (not built yet; see the project's issue on datasets).
"""

from .annotations import Annotations, load_annotations, save_annotations  # noqa: F401
from .crops import AnnotatedCrops  # noqa: F401
