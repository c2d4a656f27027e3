"""``python -m fastrerank``: the same as the ``fastrerank`` command."""

import sys

from .cli import main

sys.exit(main())
