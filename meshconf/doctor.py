"""`python -m meshconf.doctor` runs the `meshconf doctor` job of `meshconf.jobs.doctor` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.doctor import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
