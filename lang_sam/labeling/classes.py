"""Classes for a labelling run: predicted phrases -> stable class names and ids, and per-class NMS.

Class ids start at 0 (YOLO's convention); COCO ``category_id`` is that id + 1 (COCO reserves 0).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import torch

from lang_sam.errors import InvalidArgumentError, InvalidClassMapError, UnknownClassError
from lang_sam.validation import as_numpy

__all__ = ["normalize_phrase", "ClassMap", "class_nms"]


def normalize_phrase(phrase: str) -> str:
    """Lower case, dots dropped, white space collapsed: ``" Car.  Wheel"`` -> ``"car wheel"``."""
    return " ".join(str(phrase).lower().replace(".", " ").split())


class ClassMap:
    """Maps the phrases GroundingDINO returns to stable class names and ids (from 0).

    Two modes:

    - **fixed** (:meth:`parse`): classes named up front, each with the prompt phrases that find it,
      e.g. ``ClassMap.parse(["car=car. automobile", "wheel"])``. :attr:`prompt` is every phrase
      joined with ``". "`` (``"car. automobile. wheel"``). A predicted phrase maps to the class one
      of whose prompt phrases equals it; else to the class with the longest prompt phrase found in
      it as whole words; else to the class sharing the most words with it; else to nothing
      (:meth:`class_id` returns ``None`` and the detection should be dropped). Ties go to the
      class named first.
    - **open** (``ClassMap()``): every distinct (normalised, non-empty) phrase is a class, ids in
      order of first appearance; :meth:`class_id` adds new phrases as it meets them. An empty
      phrase (GroundingDINO's best token was punctuation) maps to ``None``.

    ``ClassMap(names=[...])`` (or :meth:`from_state`) restores an open map's classes so ids stay
    stable across a resumed run.
    """

    def __init__(self, classes: Sequence[tuple[str, Sequence[str]]] | None = None, *,
                 names: Sequence[str] | None = None):
        self.fixed = classes is not None
        self._names: list[str] = []
        self._phrases: list[list[str]] = []
        if classes is not None:
            if names is not None:
                raise InvalidClassMapError("pass either classes (a fixed map) or names (an open map), not both")
            if not classes:
                raise InvalidClassMapError("a fixed class map needs at least one class, got none")
            owner: dict[str, str] = {}
            for name, phrases in classes:
                name = str(name).strip()
                if not name:
                    raise InvalidClassMapError("class names must be non-empty, got an empty name")
                if name in self._names:
                    raise InvalidClassMapError(f"class {name!r} is named twice; name each class once")
                norm = [normalize_phrase(p) for p in phrases]
                norm = [p for i, p in enumerate(norm) if p and p not in norm[:i]]
                if not norm:
                    raise InvalidClassMapError(
                        f"class {name!r} has no prompt phrase; expected e.g. '{name}={name}'"
                    )
                for p in norm:
                    if p in owner:
                        raise InvalidClassMapError(
                            f"prompt phrase {p!r} is given for both class {owner[p]!r} and {name!r}; "
                            "each phrase must find one class"
                        )
                    owner[p] = name
                self._names.append(name)
                self._phrases.append(norm)
        elif names is not None:
            for n in names:
                self.class_id(n)

    @classmethod
    def parse(cls, specs: Iterable[str]) -> "ClassMap":
        """A fixed map from specs ``"name=phrase. phrase"``, one class each.

        A spec without ``=`` makes one class per phrase: ``"car. wheel"`` is the classes ``car``
        and ``wheel``, each found by its own name.
        """
        classes: list[tuple[str, list[str]]] = []
        for spec in specs:
            if not isinstance(spec, str) or not spec.strip():
                raise InvalidClassMapError(
                    f"class spec must be a non-empty string such as 'car=car. automobile', got {spec!r}"
                )
            if "=" in spec:
                name, _, rest = spec.partition("=")
                if "=" in rest:
                    raise InvalidClassMapError(
                        f"class spec {spec!r} holds more than one '='; expected 'name=phrase. phrase'"
                    )
                phrases = [p for p in rest.split(".") if p.strip()]
                if not name.strip():
                    raise InvalidClassMapError(
                        f"class spec {spec!r} has an empty name before '='; expected 'name=phrase. phrase'"
                    )
                classes.append((name.strip(), phrases))
            else:
                for p in spec.split("."):
                    if p.strip():
                        classes.append((p.strip(), [p]))
        return cls(classes)

    @classmethod
    def from_state(cls, state: dict) -> "ClassMap":
        """Rebuild a map from :meth:`state`."""
        if state.get("fixed"):
            return cls([(c["name"], c["phrases"]) for c in state["classes"]])
        return cls(names=[c["name"] for c in state["classes"]])

    def state(self) -> dict:
        """A JSON-able description (see :meth:`from_state`)."""
        return {
            "fixed": self.fixed,
            "classes": [
                {"name": n, "phrases": list(p)} for n, p in zip(self._names, self._phrases)
            ],
        }

    @property
    def names(self) -> list[str]:
        """Class names, index = class id."""
        return list(self._names)

    @property
    def prompt(self) -> str:
        """The prompt that finds every class of a fixed map: all phrases joined with ``". "``."""
        if not self.fixed:
            raise InvalidClassMapError("an open class map has no prompt of its own; classes come from the prompt")
        return ". ".join(p for phrases in self._phrases for p in phrases)

    def __len__(self) -> int:
        return len(self._names)

    def match(self, phrase: str) -> str | None:
        """The class name a predicted phrase maps to, or ``None`` (see the class doc). Never adds a
        class: an open map answers the normalised phrase, which :meth:`id_of` then numbers."""
        p = normalize_phrase(phrase)
        if not p:
            return None
        if not self.fixed:
            return p
        return None if (i := self._match_fixed(p)) is None else self._names[i]

    def _match_fixed(self, p: str) -> int | None:
        for i, phrases in enumerate(self._phrases):
            if p in phrases:
                return i
        best, best_len = None, 0
        padded = f" {p} "
        for i, phrases in enumerate(self._phrases):
            for q in phrases:
                if f" {q} " in padded and len(q) > best_len:
                    best, best_len = i, len(q)
        if best is not None:
            return best
        words = set(p.split())
        best_shared = 0
        for i, phrases in enumerate(self._phrases):
            for q in phrases:
                shared = len(words & set(q.split()))
                if shared > best_shared:
                    best, best_shared = i, shared
        return best

    def id_of(self, name: str) -> int:
        """The id of the class named ``name`` (from :meth:`match`); an open map adds a new name
        as the next id. A fixed map raises :class:`~lang_sam.errors.UnknownClassError` (a ``KeyError``) for a name it does not have."""
        if name in self._names:
            return self._names.index(name)
        if self.fixed:
            raise UnknownClassError(f"no class named {name!r}; the classes are {self._names}", name=name)
        self._names.append(name)
        self._phrases.append([name])
        return len(self._names) - 1

    def class_id(self, phrase: str) -> int | None:
        """The class id of a predicted phrase, or ``None`` if it matches no class (see class doc).
        An open map adds a phrase it has not met as a new class."""
        name = self.match(phrase)
        return None if name is None else self.id_of(name)

    def name(self, class_id: int) -> str:
        return self._names[class_id]


def class_nms(boxes: Any, scores: Any, class_ids: Sequence[int] | Any, iou_threshold: float) -> torch.Tensor:
    """Indices of the boxes kept by per-class NMS, in ascending order (the input's order).

    ``boxes`` ``(N, 4)`` xyxy, ``scores`` ``(N,)``, ``class_ids`` ``(N,)``: a box is dropped when a
    higher-scoring box *of the same class* overlaps it with IoU above ``iou_threshold``; boxes of
    different classes never suppress each other (``torchvision.ops.batched_nms``).
    """
    from torchvision.ops import batched_nms

    if not 0.0 <= float(iou_threshold) <= 1.0:
        raise InvalidArgumentError(f"iou_threshold must be in [0, 1], got {iou_threshold}")
    b = torch.as_tensor(as_numpy(boxes), dtype=torch.float32).reshape(-1, 4)
    s = torch.as_tensor(as_numpy(scores), dtype=torch.float32).reshape(-1)
    c = torch.as_tensor(as_numpy(class_ids), dtype=torch.int64).reshape(-1)
    if not len(b) == len(s) == len(c):
        raise InvalidArgumentError(f"got {len(b)} boxes, {len(s)} scores and {len(c)} class ids; expected equal")
    if len(b) == 0:
        return torch.zeros(0, dtype=torch.int64)
    keep = batched_nms(b, s, c, float(iou_threshold))
    return torch.sort(keep).values
