"""Start the HTTP server or the web demo on the tiny test models (used by tests in a subprocess).

    python tests/serve_tiny.py server|app --sam-ckpt S --gdino-ckpt G [flags of that command]

Besides ``tiny_sam`` / ``tiny_gdino`` (served), three more SAM types are registered for the model
switching tests; their files are looked up in ``LANG_SAM_WEIGHTS_DIR``: ``tiny_sam_other``,
``tiny_sam_missing`` and ``tiny_sam_broken`` (the tests write the first and the last).
"""

import sys

from lang_sam.testing import tiny_gdino_spec, tiny_sam_spec
from lang_sam.models.registry import register_model

EXTRA_SAM_TYPES = ("tiny_sam_other", "tiny_sam_missing", "tiny_sam_broken")

if __name__ == "__main__":
    register_model(tiny_sam_spec())
    register_model(tiny_gdino_spec())
    for name in EXTRA_SAM_TYPES:
        register_model(tiny_sam_spec(name))
    which, argv = sys.argv[1], sys.argv[2:] + ["--sam-type", "tiny_sam", "--gdino-type", "tiny_gdino",
                                               "--device", "cpu"]
    from lang_sam.cli import main

    sys.exit(main(["serve" if which == "server" else "app", *argv]))
