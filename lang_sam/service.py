"""Kept for existing imports: this module now lives in :mod:`lang_sam.serving.service`."""

from lang_sam.serving.service import *  # noqa: F401,F403
from lang_sam.serving.service import __all__  # noqa: F401
