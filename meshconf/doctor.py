"""`python -m meshconf.doctor` runs the `meshconf doctor` job of `meshconf.setup.doctor` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .setup.doctor import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
