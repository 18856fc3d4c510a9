"""Kept for existing imports: this module now lives in :mod:`lang_sam.models.detector`."""

from lang_sam.models.detector import *  # noqa: F401,F403
from lang_sam.models.detector import __all__  # noqa: F401
