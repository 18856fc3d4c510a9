"""Write the tiny stand-ins of every model type that has one (see ``test_docs_examples.TINY_FOR``)
into a folder under the released file names, with a ``sitecustomize.py`` that registers them in
any Python started with that folder on ``PYTHONPATH`` (the docs examples' fixture writes the same
ones; here the Swin-B one is calibrated on the main command's own photo and prompt). CI's step 2
runs the README's main command verbatim on them (``.ci/run``):

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
    # The README's main command asks for "cat" on assets/cat.jpg with the default Swin-B: its
    # stand-in is calibrated there, so that it finds a few boxes and SAM runs too (the docs'
    # calibration, "object." on two photos, can leave "cat" with none).
    from lang_sam.models.registry import registered_specs
    from lang_sam.testing import write_gdino_checkpoint

    swinb = next(s for s in registered_specs("gdino") if s.name == "swinb")
    (folder / swinb.filename).unlink()  # a hard link to the Swin-T stand-in: that one stays as it is
    write_gdino_checkpoint(folder / swinb.filename, swinb, seed=0, few_boxes=True, target_boxes=3,
                           calibration_image=[str(docs.ROOT / "assets" / "cat.jpg")], calibration_prompt="cat")
    docs.write_site(folder)
    print(f"tiny stand-ins and sitecustomize.py written to {folder}")
