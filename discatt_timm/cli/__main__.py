"""``python -m discatt_timm.cli ...``: the ``discatt`` command without its console script."""

import sys

from . import main

sys.exit(main())
