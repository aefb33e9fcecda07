"""``python -m ij_bridge.cli`` is ``ij-bridge``."""

import sys

from . import main

sys.exit(main())
