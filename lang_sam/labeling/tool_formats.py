"""The annotation tools' files of an image run (``lang-sam predict --format labelstudio,cvat``).

Both are run-wide files, rebuilt when the run closes from the images' records (as
``coco/annotations.json`` is), so a resumed run's files hold every image done:

- ``labelstudio``: ``labelstudio/tasks.json`` (the tasks to import,
  :func:`~lang_sam.labeling.labelstudio.labelstudio_task`) and ``labelstudio/config.xml`` (the
  labelling interface with the run's classes, :func:`~lang_sam.labeling.labelstudio.labeling_config`);
- ``cvat``: ``cvat/annotations.xml`` ("CVAT for images 1.1",
  :func:`~lang_sam.labeling.cvat.cvat_images_xml`).

:class:`ExportOptions` says how: instances as masks or polygons (``shape``), and where Label
Studio finds the images (``image_prefix``). Nothing here prints.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from lang_sam.errors import InvalidRunError
from lang_sam.labeling.atomic import atomic_write_text, write_json
from lang_sam.labeling.formats import SHAPES

__all__ = ["TOOL_FORMATS", "ExportOptions", "tool_files", "write_tool_files"]

#: The image formats written here.
TOOL_FORMATS = ("labelstudio", "cvat")


@dataclass(frozen=True)
class ExportOptions:
    """How the annotation tools' formats write a run: ``shape`` (``"mask"``: Label Studio brush
    RLE, CVAT ``<mask>``; ``"polygon"``: the mask's largest outer contour) and ``image_prefix``
    (Label Studio's ``data.image`` is ``image_prefix`` + the image's path relative to its input
    folder; None: the local-files URL of its absolute path,
    :func:`~lang_sam.labeling.labelstudio.image_reference`).

    Raises:
        InvalidRunError: ``shape`` is not one of :data:`~lang_sam.labeling.formats.SHAPES`.
    """

    shape: str = "mask"
    image_prefix: str | None = None

    def __post_init__(self) -> None:
        if self.shape not in SHAPES:
            raise InvalidRunError(f"shape must be one of {', '.join(SHAPES)}, got {self.shape!r}")

    @classmethod
    def for_formats(cls, formats: Sequence[str], polygons: bool = False,
                    image_prefix: str | None = None) -> "ExportOptions":
        """The options of the CLI flags ``--polygons`` and ``--image-prefix`` for a run writing
        ``formats``.

        Raises:
            InvalidRunError: a flag that no format in ``formats`` reads (it would be ignored).
        """
        if polygons and not {"labelstudio", "cvat"} & set(formats):
            raise InvalidRunError(f"--polygons applies to --format labelstudio or cvat; the formats are "
                                  f"{','.join(formats)}")
        if image_prefix is not None and "labelstudio" not in formats:
            raise InvalidRunError(f"--image-prefix applies to --format labelstudio; the formats are "
                                  f"{','.join(formats)}")
        return cls("polygon" if polygons else "mask", image_prefix)


def tool_files(root: str | os.PathLike, formats: Sequence[str]) -> list[Path]:
    """The run-wide files of ``formats``' annotation tool formats under the output folder ``root``."""
    root = Path(root)
    out = []
    if "labelstudio" in formats:
        out += [root / "labelstudio" / "tasks.json", root / "labelstudio" / "config.xml"]
    if "cvat" in formats:
        out.append(root / "cvat" / "annotations.xml")
    return out


def write_tool_files(root: str | os.PathLike, formats: Sequence[str], records: Sequence[dict],
                     paths: Sequence[str | os.PathLike], class_names: Sequence[str],
                     options: ExportOptions | None = None, model_version: str = "lang-sam",
                     ) -> dict[str, dict[str, int]]:
    """Write the files of :func:`tool_files` from the images' COCO ``records`` (input order;
    ``file_name`` is the image's path relative to its input folder) and ``paths`` (each image's
    path, for Label Studio's local-files URL); return, for each format written, how many instances
    it holds no mask or polygon of, by reason (``{"cvat": {"empty mask": 1}}``).

    Raises:
        OSError: a file cannot be written.
    """
    from lang_sam.labeling import cvat, labelstudio

    options = options or ExportOptions()
    files = tool_files(root, formats)
    losses: dict[str, dict[str, int]] = {}

    def add(fmt_name: str, dropped: dict[str, int]) -> None:
        mine = losses.setdefault(fmt_name, {})
        for why, n in dropped.items():
            mine[why] = mine.get(why, 0) + n

    if "labelstudio" in formats:
        add("labelstudio", {})
        tasks = []
        for rec, path in zip(records, paths):
            image = labelstudio.image_reference(path, rec["file_name"], options.image_prefix)
            task, dropped = labelstudio.labelstudio_task(rec, image, options.shape, model_version)
            tasks.append(task)
            add("labelstudio", dropped)
        write_json(files[0], tasks)
        atomic_write_text(files[1], labelstudio.labeling_config(class_names, options.shape))
    if "cvat" in formats:
        text, dropped = cvat.cvat_images_xml(records, class_names, options.shape)
        atomic_write_text(files[-1], text)
        add("cvat", dropped)
    return losses
