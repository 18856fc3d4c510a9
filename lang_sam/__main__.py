"""``python -m lang_sam``: the ``lang-sam`` command (see :mod:`lang_sam.cli`)."""

import sys

from lang_sam.cli import main

if __name__ == "__main__":
    sys.exit(main())
