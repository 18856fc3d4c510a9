"""The bundled BERT tokenizer/config and the transformers-4/5 text-encoder wrapper."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import pytest
import torch

from lang_sam.models.text_encoder import BERT_DIR, BertTextEncoder, build_bert, load_tokenizer

FIXTURE = Path(__file__).parent / "fixtures" / "bert_warper_tf4.pt"


def test_bundled_vocab_is_bert_base_uncased():
    vocab = (BERT_DIR / "vocab.txt").read_bytes()
    assert hashlib.md5(vocab).hexdigest() == "64800d5d8528ce344256daf115d4965e"
    assert len(vocab.splitlines()) == 30522


def test_tokenizer_matches_groundingdino_usage():
    tok = load_tokenizer()
    assert tok.convert_tokens_to_ids(["[CLS]", "[SEP]", ".", "?"]) == [101, 102, 1012, 1029]
    ids = tok("a cat. Remote Control.")["input_ids"]
    assert ids[0] == 101 and ids[-1] == 102 and 1012 in ids
    assert tok.decode(tok("remote control")["input_ids"][1:-1]) == "remote control"


def test_config_is_bert_base():
    bert = build_bert()
    c = bert.config
    assert (c.vocab_size, c.hidden_size, c.num_hidden_layers, c.num_attention_heads,
            c.intermediate_size, c.max_position_embeddings, c.type_vocab_size) == (
        30522, 768, 12, 12, 3072, 512, 2)
    assert sum(p.numel() for p in bert.parameters()) == 109_482_240


#: How close the wrapper must come to the recorded outputs. The fixture was recorded on another
#: CPU: matmul, softmax and LayerNorm kernels (oneDNN/MKL) pick SIMD widths and reduction orders by
#: CPU model, so float32 sums are rounded in another order and the last bits differ (2.4e-7 at
#: most, on values up to 3.1, seen on a fresh install). A wrong wrapper is off by 1e-2 or more.
ATOL = RTOL = 1e-5


def test_wrapper_matches_groundingdino_warper_recorded_under_transformers_4():
    """Outputs of groundingdino's own BertModelWarper under transformers 4.57.6, stored in a fixture
    (tests/fixtures/make_bert_fixture.py), are reproduced by BertTextEncoder under the installed
    transformers, 4 or 5, to float32 rounding (see ATOL)."""
    fx = torch.load(FIXTURE, weights_only=True)
    assert fx["transformers_version"].startswith("4.")
    bert = build_bert(fx["config"])
    bert.load_state_dict(fx["state_dict"], strict=False)
    encoder = BertTextEncoder(bert).eval()
    tok = load_tokenizer()
    batch = tok(["a cat . a remote control .", "car . wheel . traffic light ."], padding="longest",
                return_tensors="pt")
    assert torch.equal(batch["input_ids"], fx["input_ids"]), "bundled tokenizer differs from the fixture's"
    inputs = {k: fx[k] for k in ("input_ids", "token_type_ids", "attention_mask", "position_ids")}
    assert inputs["attention_mask"].ndim == 3, "the fixture holds the sub-sentence (B, L, L) mask"

    def encode(**changes):
        with torch.no_grad():
            return encoder(**{**inputs, **changes})

    out = encode()
    for key in ("last_hidden_state", "pooler_output"):
        torch.testing.assert_close(out[key], fx[key], atol=ATOL, rtol=RTOL)
    # The check has teeth: wrappers that lose the sub-sentence mask or the per-phrase position ids
    # are off by three orders of magnitude more than the tolerance.
    wrong = {
        "a plain padding mask": encode(attention_mask=torch.ones_like(fx["input_ids"])),
        "default position ids": encode(position_ids=None),
    }
    for what, other in wrong.items():
        diff = (other["last_hidden_state"] - fx["last_hidden_state"]).abs().max().item()
        assert diff > 1000 * ATOL, f"{what} gives a max difference of only {diff:.2e}"
        assert not torch.allclose(other["last_hidden_state"], fx["last_hidden_state"], atol=ATOL, rtol=RTOL)


def test_wrapper_rejects_bad_mask_shape():
    enc = BertTextEncoder(build_bert({"hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2,
                                      "intermediate_size": 8}))
    with pytest.raises(ValueError, match=r"\(B, L\) or \(B, L, L\)"):
        enc(input_ids=torch.ones(1, 3, dtype=torch.long), attention_mask=torch.ones(3))


def test_groundingdino_builds_without_network(monkeypatch):
    """groundingdino's constructor would fetch bert-base-uncased from the hub; ours never connects."""
    from lang_sam.models.detector import build_groundingdino_model
    from lang_sam.testing import TINY_GDINO

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    model = build_groundingdino_model(TINY_GDINO)
    assert isinstance(model.bert, BertTextEncoder)
    assert model.tokenizer.vocab_size == 30522
    import groundingdino.models.GroundingDINO.groundingdino as gd
    assert gd.BertModelWarper.__module__.startswith("groundingdino"), "the build-time swap was undone"
