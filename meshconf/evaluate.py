"""`python -m meshconf.evaluate` runs the `meshconf evaluate` job of `meshconf.jobs.evaluate` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.evaluate import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
