"""`python -m meshconf.check_precision` runs the `meshconf check-precision` job of `meshconf.setup.check_precision`."""

import sys

from .setup.check_precision import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
