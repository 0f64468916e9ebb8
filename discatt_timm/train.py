"""``python -m discatt_timm.train``: the trainer's launch module (``accelerate launch -m``).

Only a launcher: the trainer is ``discatt_timm.training`` (``discatt_timm.train`` the function
is re-exported at the package root). ``discatt train`` takes the same arguments.
"""

import sys

from .cli.train import main

if __name__ == "__main__":
    sys.exit(main())
