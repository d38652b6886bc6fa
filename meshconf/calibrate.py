"""`python -m meshconf.calibrate` runs the `meshconf calibrate` job of `meshconf.jobs.calibrate` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.calibrate import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
