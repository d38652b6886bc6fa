"""`python -m meshconf.prepare` runs the `meshconf prepare` job of `meshconf.classifier.prepare` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .classifier.prepare import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
