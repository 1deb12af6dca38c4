"""``python -m emoboost.cli``: the same as the ``emoboost`` command."""

import sys

from emoboost.cli import main

sys.exit(main())
