"""Kept for existing imports: this module now lives in :mod:`lang_sam.models.segmenter`."""

from lang_sam.models.segmenter import *  # noqa: F401,F403
from lang_sam.models.segmenter import __all__  # noqa: F401
