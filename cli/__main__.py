"""``python -m ladsdin.cli``: the ``ladsdin`` command."""
from __future__ import annotations

import sys

from ladsdin.cli import main

sys.exit(main())
