"""``python -m postdesk``: the same as the ``postdesk`` console script."""

from __future__ import annotations

import sys

from postdesk.cli import main

sys.exit(main())
