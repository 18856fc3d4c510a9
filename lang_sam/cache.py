"""A small, bounded, thread-safe LRU cache of per-image encodings, keyed by image content."""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from typing import Any, Hashable

import numpy as np

from lang_sam.errors import InvalidArgumentError

__all__ = ["EncodingCache", "image_key"]


def image_key(pixels: np.ndarray) -> str:
    """A content key for an ``HxWx3`` uint8 image: equal pixels give equal keys, whatever object
    holds them (blake2b over the bytes, plus the shape)."""
    arr = np.ascontiguousarray(pixels)
    digest = hashlib.blake2b(arr.data, digest_size=16).hexdigest()
    return f"{digest}-{'x'.join(map(str, arr.shape))}"


class EncodingCache:
    """Least-recently-used mapping with at most ``maxsize`` entries (0 disables caching)."""

    def __init__(self, maxsize: int = 2):
        self._data: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.maxsize = maxsize

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidArgumentError(f"cache size must be an int >= 0, got {value!r}")
        with self._lock:
            self._maxsize = value
            self._evict()

    def _evict(self) -> None:
        while len(self._data) > self._maxsize:
            self._data.popitem(last=False)

    def get(self, key: Hashable) -> Any | None:
        with self._lock:
            if key not in self._data:
                return None
            self._data.move_to_end(key)
            return self._data[key]

    def put(self, key: Hashable, value: Any) -> None:
        with self._lock:
            if self._maxsize == 0:
                return
            self._data[key] = value
            self._data.move_to_end(key)
            self._evict()

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._data
