"""``python -m neuromfa_callback``: the ``neuromfa`` command (see :mod:`neuromfa_callback.cli`)."""

import sys

from neuromfa_callback.cli import main

if __name__ == "__main__":
    sys.exit(main())
