"""Kept for existing imports: the weights API now lives in :mod:`lang_sam.hub`."""

from lang_sam.hub import *  # noqa: F401,F403
from lang_sam.hub import __all__  # noqa: F401
