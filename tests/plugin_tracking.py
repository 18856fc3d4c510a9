"""The plugin hook of the toy tracking family of tests/plugin_engines.py (``BoxFollow``):
:func:`register` adds it and the colour detector through the public registry API, as a plugin
outside lang_sam would. ``python -c "import plugin_tracking, runpy; plugin_tracking.register();
runpy.run_module('lang_sam', run_name='__main__')"`` is ``python -m lang_sam`` with the plugin loaded."""

from lang_sam.hub import ModelSpec
from lang_sam.models.registry import register_model, unregister_model
from plugin_engines import BoxFollowArch

SAM_TYPE, GDINO_TYPE = "box_follow", "color_detector"
#: The red rectangle of the test clip moves (2, 1) pixels a frame; so does BoxFollow's box.
STEP = (2, 1)


def register() -> tuple[ModelSpec, ModelSpec]:
    """Register the two entries; returns them (segmenter, detector)."""
    sam = register_model(ModelSpec("sam", SAM_TYPE, "box_follow.pt", BoxFollowArch(STEP),
                                   engine="plugin_engines:BoxFollow"), overwrite=True)
    det = register_model(ModelSpec("gdino", GDINO_TYPE, "colors.pth", None,
                                   engine="plugin_engines:ColorDetector"), overwrite=True)
    return sam, det


def unregister() -> None:
    unregister_model("sam", SAM_TYPE)
    unregister_model("gdino", GDINO_TYPE)
