"""`python -m meshconf.annotate` runs the `meshconf annotate` job of `meshconf.jobs.annotate` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.annotate import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
