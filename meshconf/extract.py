"""`python -m meshconf.extract` runs the `meshconf extract` job of `meshconf.sp_op.extract` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .sp_op.extract import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
