"""Start the HTTP server or the web demo on the tiny test models (used by tests in a subprocess).

    python tests/serve_tiny.py server|app --sam-ckpt S --gdino-ckpt G [flags of that command]
"""

import sys

from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec
from lang_sam.weights import register_model

if __name__ == "__main__":
    register_model(tiny_sam_spec())
    register_model(tiny_gdino_spec())
    which, argv = sys.argv[1], sys.argv[2:] + ["--sam-type", "tiny_sam", "--gdino-type", "tiny_gdino",
                                               "--device", "cpu"]
    if which == "server":
        from lang_sam.server import main
    else:
        from lang_sam.app import main
    sys.exit(main(argv))
