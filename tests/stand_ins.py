"""Write the tiny stand-ins of every model type that has one (see ``test_docs_examples.TINY_FOR``)
into a folder under the released file names, with a ``sitecustomize.py`` that registers them in
any Python started with that folder on ``PYTHONPATH``. The docs examples run on them; so does CI's
step 2, the README's main command verbatim (``.ci/run``):

    python tests/stand_ins.py DIR
    PYTHONPATH=DIR LANG_SAM_WEIGHTS_DIR=DIR LANG_SAM_OFFLINE=1 python examples/segment.py ...
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import test_docs_examples as docs  # noqa: E402

if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} FOLDER")
    folder = Path(sys.argv[1])
    folder.mkdir(parents=True, exist_ok=True)
    docs.install_tiny(folder)
    docs.write_site(folder)
    print(f"tiny stand-ins and sitecustomize.py written to {folder}")
