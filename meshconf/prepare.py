"""`python -m meshconf.prepare` runs the `meshconf prepare` job of `meshconf.jobs.prepare` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.prepare import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
