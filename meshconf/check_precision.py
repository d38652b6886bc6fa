"""`python -m meshconf.check_precision` runs the `meshconf check-precision` job of `meshconf.jobs.check_precision`."""

import sys

from .jobs.check_precision import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
