"""`python -m dnn ...`: see `dnn.cli`."""

import sys

from .cli import main

sys.exit(main())
