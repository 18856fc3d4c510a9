"""Every change lang-sam makes to third-party code or state, in one file. Each is scoped and
reversible, and none runs at import:

- :func:`empty_parameters`: while building a network, ``torch.nn.Module.register_parameter`` puts
  the building thread's parameters on the meta device (no random init; the checkpoint's tensors
  are assigned later); other threads' modules are built as usual;
- :func:`bundled_text_encoder`: while groundingdino builds its network, its ``get_tokenlizer`` and
  ``BertModelWarper`` are swapped for the bundled tokenizer and lang-sam's BERT wrapper (no BERT
  download; works on transformers 4 and 5);
- :func:`swin_backbone`: while groundingdino builds its network, its ``build_swin_transformer``
  gets extra keys (widths, depths, window) for the building thread (tiny test configurations);
- :func:`for_this_thread`: while a block lasts, a module's function is replaced for the calling
  thread only (the OpenVINO backend traces parts with inputs or forms of its own: GroundingDINO's
  proposals, the rotary encoding of SAM 3's ViT; :func:`swin_backbone` is built on it);
- :func:`use_fast_attention`: the ``forward`` of each attention block of one SAM image encoder (that
  instance only) computes with ``scaled_dot_product_attention``;
- :func:`quiet_third_party`: while lang-sam calls into groundingdino / segment_anything, the
  deprecation warnings they trigger (:data:`KNOWN_WARNINGS`) are not shown; every other warning is.

This module imports nothing of lang-sam (it sits at the bottom of the package's layers).
"""

from __future__ import annotations

import importlib
import re
import threading
import warnings
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any, Callable, Iterator, Mapping, cast

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "empty_parameters", "bundled_text_encoder", "swin_backbone", "for_this_thread", "use_fast_attention",
    "quiet_third_party", "KNOWN_WARNINGS",
]

_EMPTY_LOCK = threading.Lock()
_BUILD_LOCK = threading.Lock()
_SWIN_LOCK = threading.Lock()


@contextmanager
def empty_parameters() -> Iterator[None]:
    """Build networks whose parameters live on the meta device: no memory, no random init.

    Buffers (index tables, pixel means, position ids) are computed for real as usual. The
    parameters must then be loaded with :func:`lang_sam.models.checkpoints.load_into`, which assigns
    the checkpoint's tensors (memory-mapped where possible) instead of copying them, so the weights
    exist once in memory. ``nn.Module.register_parameter`` is swapped for the ``with`` block (one
    block at a time), and the swap acts for the thread that entered it only: a module another
    thread builds meanwhile gets its parameters as usual.
    """
    original = nn.Module.register_parameter
    builder = threading.get_ident()

    def register_parameter(self, name, param):
        original(self, name, param)
        if threading.get_ident() == builder and param is not None and param.device.type != "meta":
            self._parameters[name] = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)

    with _EMPTY_LOCK:
        # The deliberate, scoped swap of a torch method (mypy forbids assigning to methods).
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        try:
            yield
        finally:
            nn.Module.register_parameter = original  # type: ignore[method-assign]


@contextmanager
def bundled_text_encoder(
    tokenizer: Callable[[], object], bert: Callable[[], nn.Module], wrapper: type
) -> Iterator[None]:
    """While groundingdino builds its network, hand it ``tokenizer()``, ``bert()`` and ``wrapper``.

    groundingdino's constructor would otherwise download bert-base-uncased from the hub and wrap it
    in ``BertModelWarper`` (broken on transformers 5). The swap is scoped to the build (one at a
    time) and to the thread that entered it: groundingdino's own functions answer any other thread.
    """
    # groundingdino ships no type information (mypy treats its modules as Any: pyproject.toml)
    module: Any = importlib.import_module("groundingdino.models.GroundingDINO.groundingdino")
    builder = threading.get_ident()
    with _BUILD_LOCK:
        saved_tokenizer, saved_wrapper = module.get_tokenlizer, module.BertModelWarper

        def mine() -> bool:
            return threading.get_ident() == builder

        shim = SimpleNamespace(
            get_tokenlizer=lambda _type: tokenizer() if mine() else saved_tokenizer.get_tokenlizer(_type),
            get_pretrained_language_model=lambda _type: bert() if mine()
            else saved_tokenizer.get_pretrained_language_model(_type),
        )

        def warper(*args, **kwargs):
            return (wrapper if mine() else saved_wrapper)(*args, **kwargs)

        module.get_tokenlizer, module.BertModelWarper = shim, warper
        try:
            yield
        finally:
            module.get_tokenlizer, module.BertModelWarper = saved_tokenizer, saved_wrapper


@contextmanager
def for_this_thread(module: ModuleType, name: str, replacement: Callable[..., Any]) -> Iterator[None]:
    """While the block lasts, the calling thread's calls of the function ``module.name`` go to
    ``replacement``; other threads' calls go to the function as it was (a PyTorch engine running
    beside a conversion or a build is not changed). Restored on leaving, also on error."""
    original, caller = getattr(module, name), threading.get_ident()

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        return (replacement if threading.get_ident() == caller else original)(*args, **kwargs)

    setattr(module, name, dispatch)
    try:
        yield
    finally:
        setattr(module, name, original)


@contextmanager
def swin_backbone(overrides: Mapping[str, Any]) -> Iterator[None]:
    """While groundingdino builds its network, build its Swin backbone with ``overrides`` merged
    into the config's entry of ``build_swin_transformer``'s table (``embed_dim``, ``depths``,
    ``num_heads``, ``window_size``). No-op for empty ``overrides``. Scoped to the build (one at a
    time) and to the thread that entered it: any other thread gets groundingdino's own table.
    """
    if not overrides:
        yield
        return
    module: Any = importlib.import_module("groundingdino.models.GroundingDINO.backbone.backbone")  # untyped
    extra = dict(overrides)
    with _SWIN_LOCK:
        saved = module.build_swin_transformer

        def build(modelname, pretrain_img_size, **kw):
            # build_swin_transformer updates its table entry with kw
            return saved(modelname, pretrain_img_size, **{**kw, **extra})

        with for_this_thread(module, "build_swin_transformer", build):
            yield


_BIAS_BYTES = 128 * 2**20  # relative-position bias materialised at a time (global blocks)


def _sdpa_forward(self, x: torch.Tensor) -> torch.Tensor:
    """segment_anything's ``Attention.forward`` with the softmax(QK^T)V done by
    ``scaled_dot_product_attention`` and the decomposed relative-position terms as its additive
    mask, built for a few heads at a time (the global blocks' full ``(B*heads, 4096, 4096)`` bias
    would take 0.8-1 GB). Same math; float rounding differs by ~1e-7 relative."""
    from segment_anything.modeling.image_encoder import get_rel_pos

    B, H, W, _ = x.shape
    qkv = self.qkv(x).reshape(B, H * W, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.reshape(3, B * self.num_heads, H * W, -1).unbind(0)
    if not self.use_rel_pos:
        out = F.scaled_dot_product_attention(q, k, v, scale=self.scale)
    else:
        Rh = get_rel_pos(H, H, self.rel_pos_h)
        Rw = get_rel_pos(W, W, self.rel_pos_w)
        out = torch.empty_like(q)
        step = max(1, _BIAS_BYTES // ((H * W) ** 2 * q.element_size()))
        for i in range(0, q.shape[0], step):
            qi = q[i:i + step]
            r_q = qi.reshape(qi.shape[0], H, W, -1)
            rel_h = torch.einsum("bhwc,hkc->bhwk", r_q, Rh)
            rel_w = torch.einsum("bhwc,wkc->bhwk", r_q, Rw)
            bias = (rel_h[:, :, :, :, None] + rel_w[:, :, :, None, :]).reshape(qi.shape[0], H * W, H * W)
            out[i:i + step] = F.scaled_dot_product_attention(
                qi, k[i:i + step], v[i:i + step], attn_mask=bias.to(qi.dtype), scale=self.scale
            )
    out = out.view(B, self.num_heads, H, W, -1).permute(0, 2, 3, 1, 4).reshape(B, H, W, -1)
    return self.proj(out)


def use_fast_attention(sam: nn.Module) -> nn.Module:
    """Route every image-encoder attention block of this ``sam`` through :func:`_sdpa_forward`."""
    from segment_anything.modeling.image_encoder import Attention

    for module in cast(nn.Module, sam.image_encoder).modules():
        if isinstance(module, Attention):
            module.forward = _sdpa_forward.__get__(module)
    return sam


#: ``(category, message regex)`` of the warnings groundingdino and segment_anything trigger in the
#: library's own calls, which users can do nothing about. Matched from the start of the message.
KNOWN_WARNINGS: tuple[tuple[type[Warning], str], ...] = (
    # timm >= 0.9, when groundingdino's Swin backbone and fusion modules are imported
    (FutureWarning, r"Importing from timm\.models\.layers is deprecated"),
    # torch.meshgrid without indexing= (groundingdino's Swin, transformer and utils)
    (UserWarning, r"torch\.meshgrid: in an upcoming release, it will be required to pass the indexing"),
    # groundingdino's transformer, on every forward
    (FutureWarning, r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated"),
    # torch.utils.checkpoint, when a config turns GroundingDINO's gradient checkpointing on
    (UserWarning, r"None of the inputs have requires_grad=True"),
    # groundingdino's MSDeformAttn, for configurations whose head width is not a power of 2
    (UserWarning, r"\s*You'd better set d_model in MSDeformAttn"),
)

_QUIET_LOCK = threading.Lock()
_quiet_depth = 0
_quiet_filters: list[tuple] = []


@contextmanager
def quiet_third_party() -> Iterator[None]:
    """Hide :data:`KNOWN_WARNINGS` for the ``with`` block (or a function it decorates).

    ``ignore`` filters for exactly those warnings are put at the front of ``warnings.filters`` when
    the first block is entered, and those filter entries, and only they, are removed when the last
    block (of any thread) exits, so the global filters are as they were outside the blocks and any
    other warning, the user's own included, is shown as usual. (``warnings.catch_warnings`` would
    restore a saved copy of the whole list, which overlapping blocks in two threads can get wrong.)
    """
    global _quiet_depth
    with _QUIET_LOCK:
        if _quiet_depth == 0:
            _quiet_filters[:] = [("ignore", re.compile(message, re.I), category, None, 0)
                                 for category, message in KNOWN_WARNINGS]
            # typeshed declares warnings.filters a Sequence; it is the module's list, edited in place
            warnings.filters[:0] = _quiet_filters  # type: ignore[index]
        _quiet_depth += 1
    try:
        yield
    finally:
        with _QUIET_LOCK:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                ours = {id(f) for f in _quiet_filters}
                warnings.filters[:] = [f for f in warnings.filters if id(f) not in ours]  # type: ignore[index]
                _quiet_filters.clear()
