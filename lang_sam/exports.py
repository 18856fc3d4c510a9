"""Kept for existing imports: the exporters now live in :mod:`lang_sam.labeling`
(:mod:`~lang_sam.labeling.classes`, :mod:`~lang_sam.labeling.formats`, :mod:`~lang_sam.labeling.atomic`)."""

from lang_sam.labeling.atomic import *  # noqa: F401,F403
from lang_sam.labeling.atomic import __all__ as _atomic
from lang_sam.labeling.classes import *  # noqa: F401,F403
from lang_sam.labeling.classes import __all__ as _classes
from lang_sam.labeling.formats import *  # noqa: F401,F403
from lang_sam.labeling.formats import __all__ as _formats

__all__ = [*_atomic, *_classes, *_formats]
