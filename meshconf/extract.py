"""`python -m meshconf.extract` runs the `meshconf extract` job of `meshconf.jobs.extract` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.extract import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
