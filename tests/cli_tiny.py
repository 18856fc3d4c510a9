"""Run the ``lang-sam`` command with the tiny test model types registered (for subprocess tests).

    python tests/cli_tiny.py predict imgs --prompt car --output out \
        --sam-type tiny_sam --sam-ckpt S.pth --gdino-type tiny_gdino --gdino-ckpt G.pth
"""

import sys

from lang_sam.cli import main
from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec
from lang_sam.models.registry import register_model

if __name__ == "__main__":
    register_model(tiny_sam_spec())
    register_model(tiny_gdino_spec())
    sys.exit(main(sys.argv[1:]))
