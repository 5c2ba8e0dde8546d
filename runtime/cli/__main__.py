"""``python -m kubebots.runtime.cli``: the ``kubebots`` command."""

import sys

from . import main

sys.exit(main())
