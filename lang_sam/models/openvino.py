"""The OpenVINO backend: a heavy part of an engine converted once, cached on disk, compiled for the CPU.

An engine built with ``backend="openvino"`` keeps its PyTorch model and replaces its heavy parts
(an image encoder, a mask decoder, ...) by :class:`OVPart` objects made by :func:`compile_part`:
callables that take and return ``torch.Tensor`` s like the module they replace. Everything around
them (prompt handling, post-processing, the pipeline, tiling, video, the server) stays the same.

Conversion (``openvino.convert_model`` of the part traced on example inputs) happens once per
:class:`PartKey` (model, weights sha256, part, input shapes, precision, library versions) and is
cached under :func:`cache_dir` (beside the weights): written to ``<key>.incomplete-<pid>`` under
``<key>.lock``, with a ``manifest.json`` holding the sha256 of every file written last, then renamed;
OpenVINO's compiled blobs go to ``compiled/`` beside them (its model cache, which it validates).
A cache entry whose manifest is missing, unreadable, from other versions or whose files do not
match it is rebuilt, never loaded. A part that cannot be converted stays on PyTorch, with a
:class:`BackendFallbackWarning` naming it.

``import lang_sam`` never imports OpenVINO: :func:`require_openvino` does, when a backend asks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from lang_sam.errors import BackendUnavailableError, DeviceError, InvalidArgumentError, InvalidPrecisionError

__all__ = ["BACKENDS", "BackendFallbackWarning", "PartKey", "OVPart", "check_backend", "check_target", "require_openvino",
           "cache_dir", "compile_part", "physical_cores", "weights_sha256", "int8_quantizer", "openvino_version",
           "ROTARY_OPTION", "rotate_pairs"]

logger = logging.getLogger(__name__)

#: The backends an engine can run its heavy parts on; ``"pytorch"`` is the default.
BACKENDS = ("pytorch", "openvino")
_MANIFEST = "manifest.json"
_VERIFIED = "verified.json"  # (size, mtime_ns) of each file when its sha256 last matched the manifest
_FORMAT = 1  # bump when the cache layout changes: older entries are then rebuilt


class BackendFallbackWarning(UserWarning):
    """A part of an engine could not be converted for the requested backend and runs on PyTorch."""


def check_backend(backend: Any) -> str:
    """``backend`` checked against :data:`BACKENDS`.

    Raises:
        InvalidArgumentError: ``backend`` is not one of :data:`BACKENDS`.
    """
    if backend not in BACKENDS:
        raise InvalidArgumentError(f"backend must be one of {', '.join(map(repr, BACKENDS))}; got {backend!r}")
    return str(backend)


def check_target(device: Any, precision: Any = "fp32", *, engine: str, precisions: Sequence[str] = ("fp32",)) -> str:
    """The precision ``engine``'s OpenVINO parts run at on ``device``: ``precision`` when it is one
    of ``precisions`` (``"auto"`` and None mean ``"fp32"``). The one check every engine's
    ``backend="openvino"`` makes, before anything is loaded.

    Raises:
        DeviceError: ``device`` is not the CPU (OpenVINO's runtime here is its CPU plugin).
        InvalidPrecisionError: ``precision`` is not one of ``precisions``.
    """
    name = "fp32" if precision in ("auto", None) else precision
    if name not in precisions:
        raise InvalidPrecisionError(f'backend="openvino" runs {engine} at precision '
                                    f"{' or '.join(map(repr, precisions))}; got {precision!r}")
    if torch.device(device).type != "cpu":
        raise DeviceError(f'backend="openvino" runs {engine} on the CPU; got device {str(device)!r}')
    return str(name)


def require_openvino() -> Any:
    """The ``openvino`` module.

    Raises:
        BackendUnavailableError: OpenVINO is not installed (``pip install "lang-sam[openvino]"``).
    """
    return _import("openvino", 'backend="openvino" needs OpenVINO', ">=2024.0")


def _import(package: str, needs: str, required: str) -> Any:
    """``import package``, or :class:`BackendUnavailableError` naming the ``[openvino]`` extra."""
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as e:
        raise BackendUnavailableError(f'{needs}, which is not installed: pip install "lang-sam[openvino]"',
                                      package=package, required=required, installed=None, backend="openvino",
                                      extra="openvino") from e


def openvino_version() -> str | None:
    """OpenVINO's version string, or None when it is not installed (imports it)."""
    try:
        import openvino
    except ImportError:
        return None
    return str(openvino.__version__)


def physical_cores() -> int:
    """How many physical cores this process may run on: the CPUs of its affinity mask, hyperthread
    siblings counted once (Linux ``/sys/devices/system/cpu/cpu<N>/topology/core_cpus_list``);
    elsewhere, or when that cannot be read, ``os.cpu_count()``. torch's intra-op pool starts with
    this many threads, and :func:`compile_part` gives OpenVINO as many as torch has."""
    try:
        cpus = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)
    cores = set()
    for cpu in cpus:
        try:
            cores.add(Path(f"/sys/devices/system/cpu/cpu{cpu}/topology/core_cpus_list").read_text().strip())
        except OSError:
            cores.add(str(cpu))
    return max(1, len(cores))


def weights_sha256(path: str | os.PathLike, root: Path | None = None) -> str:
    """The hex sha256 of the checkpoint ``path``, hashed once: remembered in ``weights.json`` under
    ``root`` (default :func:`cache_dir`) keyed by the file's resolved path, size and mtime, so a
    multi-GB checkpoint is not re-read at every start; a file rewritten in place (another size or
    mtime) is hashed again."""
    path = Path(path).resolve()
    st = path.stat()
    stamp = [st.st_size, st.st_mtime_ns]
    book = (root if root is not None else cache_dir(path)) / "weights.json"
    try:
        known = json.loads(book.read_text())
        entry = known.get(str(path))
        if isinstance(entry, dict) and entry.get("stamp") == stamp and isinstance(entry.get("sha256"), str):
            return str(entry["sha256"])
    except (OSError, ValueError, AttributeError):
        known = {}
    digest = _sha256(path)
    known = known if isinstance(known, dict) else {}
    known[str(path)] = {"stamp": stamp, "sha256": digest}
    try:
        book.parent.mkdir(parents=True, exist_ok=True)
        tmp = book.with_name(f"{book.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(known, indent=1, sort_keys=True))
        os.replace(tmp, book)
    except OSError as e:  # a read-only folder: hash again next time
        logger.warning("could not record the sha256 of %s in %s: %s", path, book, e)
    return digest


def int8_quantizer(calibration: Sequence[Sequence[torch.Tensor]] | None = None) -> Callable[[Any], Any]:
    """A ``quantize=`` for :func:`compile_part`: INT8 through NNCF. Without ``calibration``, weight
    compression (``nncf.compress_weights``, INT8 asymmetric per channel: activations stay float32);
    with it, post-training quantization (``nncf.quantize``, transformer preset) calibrated on those
    inputs (each a sequence of tensors, the part's inputs). Approximate: outputs move from float32's.

    Raises:
        BackendUnavailableError: NNCF is not installed (``pip install "lang-sam[openvino]"``).
    """
    nncf = _import("nncf", 'precision="int8" needs NNCF', ">=2.14")
    if calibration is None:
        return lambda model: nncf.compress_weights(model)
    items = [[t.detach().cpu().numpy() for t in inputs] for inputs in calibration]

    def ptq(model: Any) -> Any:
        return nncf.quantize(model, nncf.Dataset(items), subset_size=len(items), model_type=nncf.ModelType.TRANSFORMER)

    return ptq


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    ov = require_openvino()
    try:
        ours = version("lang-sam")
    except PackageNotFoundError:  # a source tree that is not installed
        ours = "0+unknown"
    return {"openvino": str(ov.__version__), "torch": torch.__version__, "lang_sam": ours,
            "format": str(_FORMAT)}


@dataclass(frozen=True)
class PartKey:
    """What a converted part depends on; its :meth:`digest` names the cache entry.

    ``model``: the registry name (``"vit_b"``); ``weights``: the checkpoint's sha256 (hex);
    ``part``: the part's name (``"image_encoder"``); ``shapes``: the example inputs' shapes, in
    order (converted parts have static shapes unless the engine says otherwise); ``precision``:
    ``"fp32"`` or ``"int8"``; ``options``: anything else the conversion depends on, as sorted
    ``(name, value)`` string pairs.
    """

    model: str
    weights: str
    part: str
    shapes: tuple[tuple[int, ...], ...]
    precision: str = "fp32"
    options: tuple[tuple[str, str], ...] = ()

    def fields(self) -> dict[str, Any]:
        return {**asdict(self), **_versions()}

    def digest(self) -> str:
        """Hex sha256 (first 24 characters) of the key's fields and the library versions."""
        text = json.dumps(self.fields(), sort_keys=True, default=list)
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def dirname(self) -> str:
        return f"{self.model}-{self.part}-{self.precision}-{self.digest()}"


def cache_dir(weights_path: str | os.PathLike) -> Path:
    """Where converted parts of the checkpoint ``weights_path`` are cached: ``$LANG_SAM_OPENVINO_CACHE``
    if set, else an ``openvino/`` folder beside the checkpoint."""
    root = os.environ.get("LANG_SAM_OPENVINO_CACHE")
    return Path(root) if root else Path(weights_path).resolve().parent / "openvino"


class OVPart:
    """A compiled OpenVINO model standing in for a torch module: ``part(*tensors)`` returns a
    tuple of float ``torch.Tensor`` s on the CPU, in the traced module's output order.
    ``name`` is the part's name, ``path`` the cached ``model.xml``. With ``release=True`` the
    runtime's intermediate buffers are handed back after every call (``CompiledModel.release_memory``):
    an image encoder's activations then do not stay resident beside the next part's (measured with
    Swin-T + vit_b: peak RSS 6.65 -> 5.52 GB, the same speed; SAM's mask decoder with 13 prompts:
    0.8 GB less held, 0.38 -> 0.50 s a call); parts called for every frame of a video (SAM 2.1's
    memory attention and encoder) keep them."""

    def __init__(self, compiled: Any, name: str, path: Path, *, release: bool = False):
        self.compiled, self.name, self.path, self.release = compiled, name, path, release
        self._request = compiled.create_infer_request()

    def __call__(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        arrays = [t.detach().cpu().numpy() for t in inputs]
        # share_outputs=False: OpenVINO copies each output into a new array that the tensor then owns
        # (copying it again cost SAM 3 about 0.2-0.7 s a predict: 310 MB of fresh pages)
        result = self._request.infer(arrays, share_outputs=False)
        outputs = tuple(torch.from_numpy(result[out]) for out in self.compiled.outputs)
        if self.release and hasattr(self.compiled, "release_memory"):  # (an OpenVINO without it keeps them)
            del result
            self.compiled.release_memory()
        return outputs

    def __repr__(self) -> str:
        return f"OVPart({self.name!r}, {str(self.path)!r})"


#: A :class:`PartKey` option of the parts whose rotary encoding is traced as :func:`rotate_pairs`
#: (entries converted before it, with transformers' form, are then converted again).
ROTARY_OPTION = ("rotary", "gather")


def rotate_pairs(x: torch.Tensor) -> torch.Tensor:
    """``(x0, x1, x2, x3, ...) -> (-x1, x0, -x3, x2, ...)`` along the last dimension: transformers'
    ``rotate_pairwise`` (the rotary position encoding of SAM 2.1 and SAM 3), the same values bit for
    bit (a product by -1.0 or 1.0 is exact), as one gather and one product, which is what converted
    parts use. transformers' unbind + stack converts to OpenVINO's reference (not vectorised) Split
    and Concat: measured 0.13 s of SAM 2.1's 2.0 s memory attention per object and 1.1 s of SAM 3's
    14.9 s vision encoder; a ``(28736, 256)`` rotary encoding takes 20 ms this way against 35 ms."""
    d = x.shape[-1]
    order = torch.arange(d, device=x.device).view(-1, 2).flip(-1).reshape(-1)
    sign = torch.tensor([-1.0, 1.0], dtype=x.dtype, device=x.device).repeat(d // 2)
    return x.index_select(-1, order) * sign


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _stamps(entry: Path, names: Sequence[str]) -> dict[str, list[int]]:
    return {name: [(st := (entry / name).stat()).st_size, st.st_mtime_ns] for name in names}


def _valid(entry: Path, key: PartKey) -> bool:
    """Whether ``entry`` is a complete cache entry of ``key``: its manifest names this key and
    versions, and every file it lists is there with that sha256. The files are hashed once: their
    (size, mtime) when they matched are kept in ``verified.json``, and while they are unchanged the
    hashes are not recomputed (a file rewritten since, a corrupt or truncated ``.bin``, is)."""
    try:
        manifest = json.loads((entry / _MANIFEST).read_text())
        if manifest.get("key") != json.loads(json.dumps(key.fields(), default=list)):
            return False
        files = manifest["files"]
        if not files or not isinstance(files, dict):
            return False
        stamps = _stamps(entry, list(files))
        try:
            if json.loads((entry / _VERIFIED).read_text()) == stamps:
                return True
        except (OSError, ValueError):
            pass
        if not all(_sha256(entry / name) == digest for name, digest in files.items()):
            return False
        try:
            (entry / _VERIFIED).write_text(json.dumps(stamps))
        except OSError:  # a read-only cache: verified again next time
            pass
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


def _convert(module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], shapes: Sequence[Sequence[int]],
             out: Path, quantize: Callable[[Any], Any] | None) -> None:
    ov = require_openvino()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)  # tracing's notes on Python control flow
        warnings.filterwarnings("ignore", "`torch.jit.trace", FutureWarning)  # convert_model traces
        # traced here without trace checking (which runs the part three more times), then converted
        traced = torch.jit.trace(module.eval(), tuple(example_inputs), check_trace=False, strict=False)
        model = ov.convert_model(traced, example_input=tuple(example_inputs))
    for i, shape in enumerate(shapes):  # the key's shapes: static, -1 for a dynamic dimension
        model.inputs[i].get_node().set_partial_shape(ov.PartialShape([int(d) for d in shape]))
    model.validate_nodes_and_infer_types()
    if quantize is not None:
        model = quantize(model)
    ov.save_model(model, out / "model.xml", compress_to_fp16=False)


def _shapes_match(key: PartKey, example_inputs: Sequence[torch.Tensor]) -> bool:
    return len(key.shapes) == len(example_inputs) and all(
        len(k) == t.ndim and all(d in (-1, n) for d, n in zip(k, t.shape)) for k, t in zip(key.shapes, example_inputs))


def compile_part(key: PartKey, module: torch.nn.Module, example_inputs: Sequence[torch.Tensor], root: Path, *,
                 threads: int | None = None, quantize: Callable[[Any], Any] | None = None,
                 release: bool = False) -> OVPart | None:
    """``module`` as a compiled OpenVINO model, converted (or loaded from ``root``) for ``key``.

    Args:
        key: what the conversion depends on; its ``shapes`` are ``example_inputs``' shapes, where a
            ``-1`` makes that dimension dynamic (a decoder's prompt count).
        module: the torch part; called as ``module(*example_inputs)``, it returns a tensor or a
            tuple of tensors.
        example_inputs: tensors of the shapes and dtypes the part will be called with.
        root: the cache folder (:func:`cache_dir`).
        threads: CPU inference threads (default: torch's intra-op threads, ``torch.get_num_threads()``:
            the physical cores unless set otherwise, e.g. a Ray worker's ``cpus_per_worker``).
        quantize: applied to the converted ``openvino.Model`` before saving (INT8: NNCF).
        release: hand the intermediate buffers back after every call (:class:`OVPart`): for parts
            called once an image, not for those a video calls on every frame.

    Returns:
        The compiled part, or None if the part could not be converted: a
        :class:`BackendFallbackWarning` naming it was issued and the caller keeps ``module``.

    A cache entry is used only when complete and verified (see :func:`_valid`); otherwise it is
    rebuilt under ``<entry>.lock`` (a lock a killed process left is free: ``flock`` dies with its
    holder), and ``<entry>.incomplete-<pid>`` folders that killed processes left are removed.

    Raises:
        BackendUnavailableError: OpenVINO is not installed.
        InvalidArgumentError: ``key.shapes`` do not describe ``example_inputs``.
    """
    ov = require_openvino()
    if not _shapes_match(key, example_inputs):
        raise InvalidArgumentError(f"{key.part}: key shapes {key.shapes} do not match the example inputs' "
                                   f"{[tuple(t.shape) for t in example_inputs]}")
    from lang_sam.hub.download import _file_lock

    root.mkdir(parents=True, exist_ok=True)
    entry = root / key.dirname()
    if not _valid(entry, key):
        with _file_lock(root / (entry.name + ".lock")):
            if not _valid(entry, key):  # another process may have written it while we waited
                for leftover in root.glob(f"{entry.name}.incomplete-*"):  # under the lock: none is live
                    shutil.rmtree(leftover, ignore_errors=True)
                tmp = root / f"{entry.name}.incomplete-{os.getpid()}"
                tmp.mkdir()
                try:
                    _convert(module, example_inputs, key.shapes, tmp, quantize)
                except Exception as e:  # noqa: BLE001 - any conversion failure keeps the part on PyTorch
                    shutil.rmtree(tmp, ignore_errors=True)
                    warnings.warn(f"{key.model}: part {key.part!r} could not be converted to OpenVINO and runs on "
                                  f"PyTorch ({type(e).__name__}: {e})", BackendFallbackWarning, stacklevel=2)
                    return None
                files = {p.name: _sha256(p) for p in sorted(tmp.iterdir())}
                manifest = {"key": json.loads(json.dumps(key.fields(), default=list)), "files": files}
                (tmp / _MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
                (tmp / _VERIFIED).write_text(json.dumps(_stamps(tmp, list(files))))
                shutil.rmtree(entry, ignore_errors=True)  # a stale or corrupt entry
                os.replace(tmp, entry)
                logger.info("converted %s %s to OpenVINO: %s", key.model, key.part, entry)
    # f32 explicitly: on CPUs with AMX / AVX-512-BF16 OpenVINO's default inference precision is bf16
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
    config["INFERENCE_NUM_THREADS"] = int(threads) if threads is not None else torch.get_num_threads()
    # OpenVINO's own cache of compiled blobs (keyed by the model and this config; it checks them itself):
    # a later process imports the blob instead of compiling the IR again
    config["CACHE_DIR"] = str(root / "compiled")
    compiled = ov.Core().compile_model(str(entry / "model.xml"), "CPU", config)
    return OVPart(compiled, key.part, entry / "model.xml", release=release)
