"""`python -m emberfs.bench`: the same run as `emberfs bench`."""

import sys

from . import main

sys.exit(main())
