"""What a folder run tells its caller as it goes: one vocabulary for images and videos, in one
process or on Ray.

A run (:func:`lang_sam.labeling.run.label_folder`, :func:`lang_sam.labeling.video_run.track_folder`
and their Ray drivers in :mod:`lang_sam.labeling.distributed`) takes ``hooks=`` a :class:`RunHooks`
and calls, in this order:

1. :meth:`RunHooks.start` once, with the items left to do (after resume, before the first);
2. for each item, any number of :meth:`RunHooks.step` calls (progress within the item: tiles
   detected and boxes segmented for an image, frames for a video; Ray drivers send none), then
   exactly one of :meth:`RunHooks.done` or :meth:`RunHooks.failed`.

Every method does nothing here: override the ones you show (the CLI's progress bar is one).
"""

from __future__ import annotations

from typing import Any, Sequence

__all__ = ["RunHooks"]


class RunHooks:
    """No-op hooks; subclass and override what you show. ``item`` is the run's item type
    (:class:`~lang_sam.labeling.run.ImageItem`, :class:`~lang_sam.labeling.video_run.VideoItem`, ...):
    every item type has ``path`` (its file) and ``rel`` (its path relative to its input, a
    ``PurePosixPath``)."""

    def start(self, todo: Sequence[Any]) -> None:
        """The items left to do, in the order they will be done (Ray: the order they were sent)."""

    def step(self, item: Any, stage: str, done: int, total: int | None) -> None:
        """Progress within ``item``: ``done`` of ``total`` (``None``: unknown) units of ``stage``
        (``"detect"`` tiles, ``"segment"`` boxes, ``"generate"`` points, ``"frame"`` frames)."""

    def done(self, item: Any) -> None:
        """``item`` finished and its outputs are written."""

    def failed(self, item: Any, error: BaseException | str) -> None:
        """``item`` failed (``error``: the exception, or its text when it came back from a Ray
        worker) and the run goes on; an error that stops the run is raised instead."""
