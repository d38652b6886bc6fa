"""`python -m meshconf.convert_classifier` runs the `meshconf convert-classifier` job of
`meshconf.jobs.convert_classifier` (kept so that every job runs as `python -m meshconf.<job>`)."""

import sys

from .jobs.convert_classifier import main  # noqa: F401

if __name__ == "__main__":
    sys.exit(main())
