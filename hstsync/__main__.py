"""``python -m hstsync``."""

import sys

from hstsync.cli import main

sys.exit(main())
