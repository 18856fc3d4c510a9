"""Kept for existing imports: this module now lives in :mod:`lang_sam.models.text_encoder`."""

from lang_sam.models.text_encoder import *  # noqa: F401,F403
from lang_sam.models.text_encoder import __all__  # noqa: F401
