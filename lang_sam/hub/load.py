"""Reading a checkpoint file safely: ``torch.load(weights_only=True)``, memory-mapped where the
format allows; full unpickling only for official files or when the user says they trust it.

Every way a file can fail to be a checkpoint ends in a typed error naming the file and what was
found in it: :class:`~lang_sam.errors.CheckpointError` for a file that is not a PyTorch checkpoint
at all (empty, text, random bytes, a truncated zip, a plain pickle) or cannot be read even when
trusted, :class:`~lang_sam.errors.UnsafeCheckpointError` only for a well-formed checkpoint whose
pickle needs Python objects other than tensors.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import pickle
import pickletools
import struct
import tarfile
import zipfile
from pathlib import Path
from typing import Any, cast

from lang_sam.errors import CheckpointError, UnsafeCheckpointError
from lang_sam.hub.download import sha256sum
from lang_sam.hub.spec import official_hashes
from lang_sam.settings import ENV_TRUST, trust_checkpoints

logger = logging.getLogger(__name__)

__all__ = ["load_checkpoint", "check_safetensors"]

#: The first object of a legacy (non-zip) ``torch.save`` file.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_AGAIN = "; delete it and download it again (or pass the right file)"


def load_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """Load a checkpoint on the CPU with ``weights_only=True``; return the dict it holds.

    Raises:
        UnsafeCheckpointError: a well-formed checkpoint whose pickle needs Python objects other
            than tensors, unless its sha256 is an official one (published by the registry:
            :func:`lang_sam.hub.spec.official_hashes`) or ``LANG_SAM_TRUST_CHECKPOINTS=1`` is set.
        CheckpointError: anything else that is not a readable checkpoint holding a dict (the
            message says what the file holds).
    """
    import torch

    path = Path(path)
    kind = _file_kind(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True, mmap=kind == "zip")
    except pickle.UnpicklingError as exc:
        obj = _load_trusted(path, kind, exc)
    except MemoryError as exc:
        raise _out_of_memory(path) from exc
    except Exception as exc:  # torch reports damaged files as RuntimeError, EOFError, KeyError, ...
        raise CheckpointError(
            f"cannot read checkpoint {path}: {type(exc).__name__}: {_first_line(exc)}. The file "
            f"is damaged or truncated{_AGAIN}."
        ) from exc
    if not isinstance(obj, dict):
        raise CheckpointError(
            f"{path} holds a {type(obj).__name__}, expected a dict (a state dict of tensors, or "
            "a dict holding one under 'model')"
        )
    return obj


def _out_of_memory(path: Path) -> CheckpointError:
    """Reading ``path`` ran out of memory: a damaged or hostile file declaring a huge size (a few
    bytes can declare gigabytes), or a checkpoint larger than this machine's memory."""
    try:
        size = f"{path.stat().st_size:,} bytes"
    except OSError:
        size = "size unknown"
    return CheckpointError(
        f"cannot read checkpoint {path} ({size}): reading it asked for more memory than this "
        f"machine could give (MemoryError). Either the file is damaged or not a checkpoint (it "
        f"declares a size it does not hold){_AGAIN}, or it is larger than the free memory."
    )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "(no message)"


def _describe(head: bytes) -> str:
    """What the first bytes of a file look like, for an error message."""
    text = head.decode("utf-8", errors="replace").rstrip("\ufffd")  # a cut-off last character
    if text and all(c.isprintable() or c in "\r\n\t" for c in text):
        return f"text ({text[:40]!r})"
    return f"bytes {head[:8].hex(' ')}"


#: How ``torch.save(..., _use_new_zipfile_serialization=False)`` begins: its magic number pickled
#: with protocol 2 to 5 (``pickle_protocol``; 4 and 5 add a frame), byte for byte.
_LEGACY_PREFIXES = tuple(pickle.dumps(_LEGACY_MAGIC, protocol=p) for p in range(2, 6))


def _is_legacy_torch(head: bytes) -> bool:
    """True when the file's first bytes ``head`` are torch's legacy magic number pickled. Compared
    byte for byte, never unpickled: CPython's unpickler, given 11 bytes declaring a 1-EiB
    bytearray (``BYTEARRAY8``), raises MemoryError and also prints ``SystemError: deallocated
    bytearray object has exported buffers`` on stderr, which no ``except`` can catch."""
    return head.startswith(_LEGACY_PREFIXES)


def _file_kind(path: Path) -> str:
    """``"zip"`` (what ``torch.save`` writes), ``"legacy"`` (a legacy pickle or tar file); any
    other file raises :class:`CheckpointError` saying what it is."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(64)
    except OSError as exc:
        raise CheckpointError(f"cannot read checkpoint {path}: {exc}") from exc
    if size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes){_AGAIN}.")
    if head.startswith(b"PK"):
        if zipfile.is_zipfile(path):
            return "zip"
        raise CheckpointError(
            f"checkpoint {path} is a truncated or damaged zip archive ({size:,} bytes){_AGAIN}."
        )
    if head[:1] == b"\x80" and 2 <= head[1:2][0] <= 5:  # a pickle, protocol 2-5
        if _is_legacy_torch(head):
            return "legacy"
        raise CheckpointError(
            f"{path} is a Python pickle but not a PyTorch checkpoint (torch.save writes a zip "
            f"archive, or a pickle that starts with torch's magic number){_AGAIN}."
        )
    if tarfile.is_tarfile(path):  # torch's oldest format
        return "legacy"
    raise CheckpointError(
        f"{path} is not a PyTorch checkpoint: it is neither a zip archive (what torch.save writes) "
        f"nor a pickle; it starts with {_describe(head)} ({size:,} bytes){_AGAIN}."
    )


#: Pickle opcodes that push a string (module and class names of STACK_GLOBAL).
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
               "SHORT_BINSTRING"}
#: Globals torch's own pickles use for tensors and state dicts (allowed by ``weights_only``).
_TORCH_GLOBALS = ("torch.", "collections.OrderedDict", "_codecs.encode")


def _pickle_globals(stream) -> list[str]:
    """The globals (``module.name``) one pickle refers to, read with :mod:`pickletools` (nothing is
    run). Raises ``ValueError`` (or another error) if the pickle is damaged."""
    found: list[str] = []
    recent: list[Any] = []
    memo: dict[int, Any] = {}
    for op, arg, _pos in pickletools.genops(stream):
        name = op.name
        if name in _STRING_OPS:
            recent.append(arg)
        elif name in ("BINGET", "LONG_BINGET", "GET"):
            recent.append(memo.get(int(cast(int, arg))))
        elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
            memo[int(cast(int, arg))] = recent[-1] if recent else None
        elif name == "MEMOIZE":
            memo[len(memo)] = recent[-1] if recent else None
        elif name in ("GLOBAL", "INST"):
            found.append(str(arg).replace(" ", "."))
        elif name == "STACK_GLOBAL":
            module, attr = (recent[-2], recent[-1]) if len(recent) >= 2 else (None, None)
            found.append(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "?")
            recent.append(None)
        else:
            recent.append(None)
    return list(dict.fromkeys(found))


def _unsafe_globals(path: Path, kind: str) -> list[str] | None:
    """The non-torch globals the checkpoint's pickle needs, or None if that pickle is damaged."""
    try:
        if kind == "zip":
            with zipfile.ZipFile(path) as zf:
                member = next((n for n in zf.namelist() if n.endswith("data.pkl")), None)
                if member is None:
                    return None
                names = _pickle_globals(io.BytesIO(zf.read(member)))
        elif kind == "legacy" and not tarfile.is_tarfile(path):
            with open(path, "rb") as f:
                for _ in range(3):  # magic number, protocol version, system info
                    _pickle_globals(f)
                names = _pickle_globals(f)
        else:
            return []
    except MemoryError as exc:
        raise _out_of_memory(path) from exc
    except Exception:
        return None
    return [n for n in names if not n.startswith(_TORCH_GLOBALS)]


def _load_trusted(path: Path, kind: str, exc: pickle.UnpicklingError) -> Any:
    """``weights_only`` refused the file: tell a damaged pickle from one of Python objects, and
    load the latter only if it is trusted (official sha256 or ``LANG_SAM_TRUST_CHECKPOINTS``)."""
    import torch

    unsafe = _unsafe_globals(path, kind)
    if unsafe is None:
        raise CheckpointError(
            f"cannot read checkpoint {path}: its pickle is damaged ({_first_line(exc)}){_AGAIN}."
        ) from None
    if not (trust_checkpoints() or sha256sum(path) in official_hashes()):
        what = ", ".join(unsafe[:5]) + (f" (+{len(unsafe) - 5} more)" if len(unsafe) > 5 else "")
        raise UnsafeCheckpointError(
            f"{path} cannot be loaded with torch.load(weights_only=True): besides tensors it "
            f"holds Python objects ({what or 'of types weights_only does not allow'}), which can "
            f"run code when unpickled, and its sha256 is not an official one. If you trust the "
            f"file, set {ENV_TRUST}=1."
        ) from None
    logger.info("%s needs full unpickling; trusted (official hash or %s)", path, ENV_TRUST)
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except MemoryError as exc:
        raise _out_of_memory(path) from exc
    except Exception as err:  # anything unpickling can raise: a missing module, a failing __setstate__
        raise CheckpointError(
            f"cannot read checkpoint {path} even with full unpickling (trusted): "
            f"{type(err).__name__}: {_first_line(err)}"
        ) from err


#: safetensors' dtypes and their bits per element (safetensors 0.8's list).
_SAFETENSORS_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6, "I16": 16, "U16": 16, "F16": 16,
    "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "C64": 64, "F64": 64, "I64": 64, "U64": 64,
}
#: The largest header safetensors itself reads (``MAX_HEADER_SIZE``, 100 MB).
SAFETENSORS_MAX_HEADER = 100_000_000


def check_safetensors(path: str | os.PathLike) -> dict[str, Any]:
    """Check a ``.safetensors`` file's layout before any library (native code) reads it; return its
    header (tensor name -> ``{"dtype", "shape", "data_offsets"}``, plus ``"__metadata__"``).

    The 8-byte little-endian header length must fit in the file (and safetensors' 100 MB bound),
    the header must be UTF-8 JSON holding an object, each tensor a known dtype, a shape of
    non-negative integers and ``[begin, end]`` offsets whose span is the shape's size in bytes, the
    tensors covering the data that follows the header exactly, without gap or overlap. Anything else
    raises :class:`CheckpointError` naming the file and what was expected."""
    path = Path(path)
    again = f"{_AGAIN}."
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                raise CheckpointError(
                    f"{path} is not a safetensors file: {size} bytes, shorter than its 8-byte header "
                    f"length{again}")
            (n,) = struct.unpack("<Q", head)
            if n > size - 8 or n > SAFETENSORS_MAX_HEADER:
                raise CheckpointError(
                    f"{path} is not a safetensors file: its first 8 bytes declare a {n:,}-byte header, "
                    f"expected at most {min(size - 8, SAFETENSORS_MAX_HEADER):,} (the file holds "
                    f"{size:,} bytes; safetensors reads at most {SAFETENSORS_MAX_HEADER:,}){again}")
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointError(f"cannot read {path}: {exc}") from exc
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise CheckpointError(
            f"{path} is not a safetensors file: its {n:,}-byte header is not UTF-8 JSON "
            f"({type(exc).__name__}: {_first_line(exc)}){again}") from None
    if not isinstance(header, dict):
        raise CheckpointError(
            f"{path}: its header holds a JSON {type(header).__name__}, expected an object (tensor "
            f"name -> dtype, shape, data_offsets){again}")
    data = size - 8 - n
    spans = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not (isinstance(entry, dict) and all(isinstance(v, str) for v in entry.values())):
                raise CheckpointError(
                    f"{path}: its header's __metadata__ is {json.dumps(entry)[:80]}, expected an object "
                    f"of strings{again}")
            continue
        spans.append((*_tensor_span(path, name, entry, again), name))
    end = 0
    for begin, stop, name in sorted(spans):
        if begin != end:
            what = "overlaps the tensor before it" if begin < end else f"leaves bytes {end}-{begin} unused"
            raise CheckpointError(
                f"{path}: tensor {name!r} at data offsets [{begin}, {stop}] {what}; expected the tensors "
                f"to cover the data exactly, one after another{again}")
        end = stop
    if end != data:
        raise CheckpointError(
            f"{path}: its tensors end at data offset {end:,}, but {data:,} bytes of data follow the header "
            f"({'truncated' if end > data else 'unexplained trailing bytes'}); expected them to be "
            f"equal{again}")
    return header


def _tensor_span(path: Path, name: str, entry: Any, again: str) -> tuple[int, int]:
    """``(begin, end)`` of one safetensors header entry, checked (see :func:`check_safetensors`)."""
    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{path}: tensor {name!r} has {what}{again}")

    if not isinstance(entry, dict):
        raise bad(f"the entry {json.dumps(entry)[:80]}, expected an object with dtype, shape, data_offsets")
    dtype: Any = entry.get("dtype")
    shape: Any = entry.get("shape")
    offsets: Any = entry.get("data_offsets")
    if dtype not in _SAFETENSORS_BITS:
        raise bad(f"dtype {dtype!r}, expected one of {', '.join(_SAFETENSORS_BITS)}")

    def ints(v: Any) -> bool:
        return isinstance(v, list) and all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in v)

    if not ints(shape):
        raise bad(f"shape {json.dumps(shape)[:80]}, expected a list of integers >= 0")
    if not (ints(offsets) and len(offsets) == 2 and offsets[0] <= offsets[1]):
        raise bad(f"data_offsets {json.dumps(offsets)[:80]}, expected [begin, end] with 0 <= begin <= end")
    bits = math.prod(shape) * _SAFETENSORS_BITS[dtype]
    if bits % 8 or bits // 8 != offsets[1] - offsets[0]:
        raise bad(f"shape {shape} of {dtype} ({bits / 8:g} bytes) but data_offsets {offsets} "
                  f"({offsets[1] - offsets[0]} bytes); expected them to agree")
    return offsets[0], offsets[1]
