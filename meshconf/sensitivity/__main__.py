import sys

from ..jobs.sensitivity import main

sys.exit(main())
