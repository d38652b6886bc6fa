"""`python -m meshconf.train` runs the `meshconf train` job of `meshconf.jobs.train` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.train import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
