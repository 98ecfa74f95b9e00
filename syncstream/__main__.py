"""Run the ``syncstream`` command with ``python3 -m syncstream``."""

import sys

from .cli import main

sys.exit(main())
