"""GroundingDINO's text side: the bundled bert-base-uncased tokenizer and a BERT wrapper.

groundingdino-py 0.4.0's ``BertModelWarper`` calls ``get_extended_attention_mask`` and
``get_head_mask``, which transformers 5 removed (GroundingDINO issue #446). :class:`BertTextEncoder`
keeps the same submodule names (``embeddings``, ``encoder``, ``pooler``), so released checkpoints load
unchanged, and builds the additive attention mask itself, exactly as transformers 4 did. It works
with transformers 4 and 5.

The tokenizer and the config come from files shipped in ``lang_sam/data/bert-base-uncased``; the
BERT weights come from the GroundingDINO checkpoint. Nothing is ever downloaded for BERT.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, cast

import torch
from torch import nn

from lang_sam.errors import InvalidArgumentError

if TYPE_CHECKING:  # transformers is imported when a model is built, not with this module
    from transformers import BertModel
    from transformers.models.bert.modeling_bert import BertEmbeddings, BertEncoder, BertPooler

__all__ = ["BERT_DIR", "BertTextEncoder", "load_tokenizer", "build_bert"]

#: Folder holding bert-base-uncased's ``config.json``, ``vocab.txt`` and ``tokenizer_config.json``.
BERT_DIR = Path(__file__).resolve().parents[1] / "data" / "bert-base-uncased"


@lru_cache(maxsize=1)
def load_tokenizer():
    """The bert-base-uncased tokenizer, built from the bundled files (no network)."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(BERT_DIR), local_files_only=True)


def build_bert(overrides: Mapping[str, Any] | None = None) -> BertModel:
    """A ``transformers.BertModel`` with the bundled config (plus ``overrides``), eager attention.

    Its weights are placeholders: the GroundingDINO checkpoint overwrites all of them.
    """
    from transformers import BertConfig, BertModel

    params = json.loads((BERT_DIR / "config.json").read_text())
    params.update(overrides or {})
    config = BertConfig(**params)
    # The original computed BERT with transformers' eager attention; keep those exact numbers.
    config._attn_implementation = "eager"
    return BertModel(config)


class BertTextEncoder(nn.Module):
    """Drop-in replacement for groundingdino's ``BertModelWarper``.

    ``forward`` takes ``input_ids`` ``(B, L)`` long, ``attention_mask`` ``(B, L)`` or ``(B, L, L)``
    (1/True = attend), ``token_type_ids`` and ``position_ids`` ``(B, L)`` long, and returns a dict
    with ``last_hidden_state`` ``(B, L, hidden)`` and ``pooler_output`` ``(B, hidden)``.
    """

    embeddings: BertEmbeddings
    encoder: BertEncoder
    pooler: BertPooler | None

    def __init__(self, bert_model: nn.Module):
        super().__init__()
        # bert_model is a transformers BertModel (build_bert); nn.Module's __getattr__ types its
        # submodules as Tensor | Module.
        self.config = bert_model.config
        self.embeddings = cast("BertEmbeddings", bert_model.embeddings)
        self.encoder = cast("BertEncoder", bert_model.encoder)
        self.pooler = cast("BertPooler | None", bert_model.pooler)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        position_ids: torch.Tensor | None = None,
        **_: Any,
    ) -> dict[str, torch.Tensor | None]:
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if token_type_ids is None:
            token_type_ids = torch.zeros_like(input_ids)
        dtype = self.embeddings.word_embeddings.weight.dtype
        if attention_mask.dim() == 3:
            extended = attention_mask[:, None, :, :]
        elif attention_mask.dim() == 2:
            extended = attention_mask[:, None, None, :]
        else:
            raise InvalidArgumentError(
                f"attention_mask must be (B, L) or (B, L, L), got shape {tuple(attention_mask.shape)}"
            )
        extended = (1.0 - extended.to(dtype)) * torch.finfo(dtype).min
        hidden = self.embeddings(
            input_ids=input_ids, token_type_ids=token_type_ids, position_ids=position_ids
        )
        sequence = self.encoder(hidden, attention_mask=extended)[0]
        pooled = self.pooler(sequence) if self.pooler is not None else None
        return {"last_hidden_state": sequence, "pooler_output": pooled}
