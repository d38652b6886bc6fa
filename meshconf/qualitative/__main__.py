import sys

from ..jobs.qualitative import main

sys.exit(main())
