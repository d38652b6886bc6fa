"""Error estimators: is the mesh accurate, which joint is worst, how wrong is each joint.

`load(name="default"|"original")` returns an `Estimator` whose `predict(ed, conf)` takes (N, 14) ED and OpenPose
confidence arrays in normalised units (1.0 = 112 px).
"""

from .models import Estimator, Prediction, load, load_file  # noqa: F401
