"""``python -m syncwatch`` is the same as the ``syncwatch`` command."""

import sys

from syncwatch.cli import main

sys.exit(main())
