"""``python -m symprop ...``: the same as the ``symprop`` command."""
import sys

from symprop.cli import main

sys.exit(main())
