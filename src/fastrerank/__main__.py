"""``python -m fastrerank``: the same as the ``fastrerank`` command."""

import sys

from ._cli import main

sys.exit(main())
