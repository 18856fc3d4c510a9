"""Kept for existing imports: this module now lives in :mod:`lang_sam.serving.app`."""

from lang_sam.serving.app import *  # noqa: F401,F403
from lang_sam.serving.app import __all__  # noqa: F401

if __name__ == "__main__":
    raise SystemExit(main())  # noqa: F405
