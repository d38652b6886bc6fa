"""`python -m meshconf.fetch` runs the `meshconf fetch` job of `meshconf.jobs.fetch` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.fetch import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
