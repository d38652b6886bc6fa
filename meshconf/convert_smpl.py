"""`python -m meshconf.convert_smpl` runs the `meshconf convert-smpl` job of `meshconf.jobs.convert_smpl` (kept so that the commands
earlier versions and the README show keep working)."""

import sys

from .jobs.convert_smpl import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
