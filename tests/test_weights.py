"""Registry, resolution order, downloads against a real local HTTP server, safe loading."""

from __future__ import annotations

import hashlib
import os
import pickle
import random
import struct
import zipfile
from pathlib import Path

import pytest
import torch

from http_server import FileServer
from lang_sam import LangSAM
from lang_sam.errors import (
    CheckpointError,
    InvalidModelSourceError,
    CheckpointMismatchError,
    ChecksumMismatchError,
    DownloadError,
    MissingWeightsError,
    UnknownModelError,
    UnsafeCheckpointError,
    WeightsNotFoundError,
)
from lang_sam.testing import TINY_SAM, tiny_gdino_spec, tiny_sam_spec, write_sam_checkpoint
from lang_sam.hub import (
    GDINO_MODELS,
    SAM_MODELS,
    ModelSpec,
    download_file,
    load_checkpoint,
    resolve_checkpoint,
)
from lang_sam.models.registry import get_spec, register_model, unregister_model

PAYLOAD = os.urandom(3 * 1024 * 1024 + 17)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with FileServer() as s:
        s.files["/w/model.pth"] = PAYLOAD
        yield s


@pytest.fixture
def online(monkeypatch):
    monkeypatch.delenv("LANG_SAM_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


# ------------------------------------------------------------------------------------------
# Registry
# ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,fname,sha", [
    ("vit_h", "sam_vit_h_4b8939.pth", "a7bf3b02f3ebf1267aba913ff637d9a2d5c33d3173bb679e46d9f338c26f262e"),
    ("vit_l", "sam_vit_l_0b3195.pth", "3adcc4315b642a4d2101128f611684e8734c41232a17c648ed1693702a49a622"),
    ("vit_b", "sam_vit_b_01ec64.pth", "ec2df62732614e57411cdcf32a23ffdf28910380d03139ee0f4fcbe91eb8c912"),
])
def test_sam_registry_matches_the_official_files(name, fname, sha):
    assert SAM_MODELS[name] == f"https://dl.fbaipublicfiles.com/segment_anything/{fname}"
    spec = get_spec("sam", name)
    assert spec.filename == fname and spec.sha256 == sha


def test_gdino_registry_sources(monkeypatch):
    monkeypatch.delenv("HF_ENDPOINT", raising=False)
    swinb, swint = get_spec("gdino", "swinb"), get_spec("gdino", "swint")
    assert get_spec("gdino", None) is swinb and get_spec("sam", None).name == "vit_h"
    assert swinb.sources() == [
        "https://huggingface.co/ShilongLiu/GroundingDINO/resolve/main/groundingdino_swinb_cogcoor.pth",
        "https://github.com/IDEA-Research/GroundingDINO/releases/download/v0.1.0-alpha2/groundingdino_swinb_cogcoor.pth",
    ]
    assert swint.sha256 == "3b3ca2563c77c69f651d7bd133e97139c186df06231157a64c507099c52bc799"
    assert swint.sources()[1].endswith("v0.1.0-alpha/groundingdino_swint_ogc.pth")
    assert GDINO_MODELS["swint"] == swint.sources()[0]
    monkeypatch.setenv("HF_ENDPOINT", "https://mirror.example")
    assert swinb.sources()[0].startswith("https://mirror.example/ShilongLiu/GroundingDINO/resolve/main/")


@pytest.mark.parametrize("family,name,label", [("sam", "vit_x", "sam_type"), ("gdino", "swin", "gdino_type"),
                                               ("sam", 3, "sam_type")])
def test_unknown_type_lists_valid_ones(family, name, label):
    with pytest.raises(UnknownModelError) as err:
        get_spec(family, name)
    assert isinstance(err.value, ValueError)
    assert label in str(err.value) and ("vit_h" in str(err.value) or "swinb" in str(err.value))


def test_langsam_rejects_unknown_type_before_loading_anything(monkeypatch):
    with pytest.raises(UnknownModelError, match="vit_h"):
        LangSAM(sam_type="vit_x")
    with pytest.raises(UnknownModelError, match="swint"):
        LangSAM(gdino_type="swin_x")


def _cli(*argv):
    """Run ``lang-sam`` in-process; a usage error (exit 2) is how the command reports the type."""
    import contextlib
    import io

    from lang_sam.cli import main

    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(list(argv))
    raise UnknownModelError(f"exit {rc}: {err.getvalue()}") if rc == 2 else AssertionError(rc)


def _service(**kwargs):
    from lang_sam.serving.service import ModelService

    return ModelService(**kwargs)


@pytest.mark.parametrize("family,call", [
    ("sam", lambda m: LangSAM(sam_type="vit_x")),
    ("sam", lambda m: LangSAM("vit_x", "some/ckpt.pth")),
    ("gdino", lambda m: LangSAM(gdino_type="swin_x")),
    ("sam", lambda m: m.build_sam("vit_x")),  # the original demo's build_sam(sam_type) form
    ("sam", lambda m: m.build_sam(sam_type="vit_x")),
    ("gdino", lambda m: m.build_groundingdino(gdino_type="swin_x")),
    ("sam", lambda m: _service(sam_type="vit_x")),
    ("gdino", lambda m: _service(gdino_type="swin_x")),
    ("sam", lambda m: _service().predict(None, "cat", sam_type="vit_x")),
    ("gdino", lambda m: _service().predict(None, "cat", gdino_type="swin_x")),
    ("sam", lambda m: _cli("download", "--sam-type", "vit_x")),
    ("gdino", lambda m: _cli("download", "--gdino-type", "swin_x")),
    ("sam", lambda m: _cli("predict", "x.png", "--prompt", "cat", "--output", "o", "--sam-type", "vit_x")),
], ids=["LangSAM-sam", "LangSAM-sam-with-path", "LangSAM-gdino", "build_sam-positional",
        "build_sam-keyword", "build_groundingdino", "ModelService-sam", "ModelService-gdino",
        "ModelService.predict-sam", "ModelService.predict-gdino", "cli-download-sam",
        "cli-download-gdino", "cli-predict-sam"])
def test_every_entry_point_rejects_an_unknown_type_listing_the_valid_ones(model, family, call):
    """Issue 8: build_sam("vit_x") was taken for a file path (WeightsNotFoundError 'vit_x')."""
    sam_before, gdino_before = model.segmenter, model.detector
    with pytest.raises(UnknownModelError) as err:
        call(model)
    msg = str(err.value)
    valid = ["vit_b", "vit_h", "vit_l"] if family == "sam" else ["swinb", "swint"]
    assert all(name in msg for name in valid), msg
    assert "vit_x" in msg or "swin_x" in msg
    assert model.segmenter is sam_before and model.detector is gdino_before  # nothing was replaced


# ------------------------------------------------------------------------------------------
# Resolution order
# ------------------------------------------------------------------------------------------

def test_resolution_order(tmp_path, monkeypatch):
    spec = get_spec("sam", "vit_b")
    explicit = tmp_path / "mine.pth"
    explicit.write_bytes(b"x")
    weights = tmp_path / "weights"
    weights.mkdir()
    hub = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    (hub / spec.filename).write_bytes(b"hub")
    # the torch hub cache (the original's download location) is reused
    assert resolve_checkpoint(spec) == hub / spec.filename
    # LANG_SAM_WEIGHTS_DIR comes before it
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(weights))
    (weights / spec.filename).write_bytes(b"w")
    assert resolve_checkpoint(spec) == weights / spec.filename
    # an explicit path comes first; a folder holding the canonical name works too
    assert resolve_checkpoint(spec, explicit) == explicit
    assert resolve_checkpoint(spec, weights) == weights / spec.filename


def test_hugging_face_cache_is_reused(tmp_path, monkeypatch):
    """A file hf_hub_download put in the HF cache (as the original did) is found without network."""
    spec = get_spec("gdino", "swint")
    cache = Path(os.environ["HF_HUB_CACHE"]) / "models--ShilongLiu--GroundingDINO"
    commit = "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "snapshots" / commit
    snap.mkdir(parents=True)
    (cache / "refs").mkdir()
    (cache / "refs" / "main").write_text(commit)
    (snap / spec.filename).write_bytes(b"cached")
    assert resolve_checkpoint(spec).read_bytes() == b"cached"


def test_explicit_missing_path_is_a_file_not_found_error(tmp_path):
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_checkpoint(get_spec("sam", "vit_b"), tmp_path / "nope.pth")
    assert isinstance(err.value, FileNotFoundError) and "nope.pth" in str(err.value)


@pytest.mark.parametrize("var", ["LANG_SAM_OFFLINE", "HF_HUB_OFFLINE"])
def test_offline_mode_never_touches_the_network(server, tmp_path, monkeypatch, online, var):
    monkeypatch.setenv(var, "1")
    spec = ModelSpec("sam", "offline_probe", "offline_probe.pth", TINY_SAM, urls=(f"{server.url}/w/model.pth",))
    with pytest.raises(WeightsNotFoundError) as err:
        resolve_checkpoint(spec)
    msg = str(err.value)
    assert "offline_probe.pth" in msg and "LANG_SAM_WEIGHTS_DIR" in msg and "offline" in msg
    assert server.requests == []


# ------------------------------------------------------------------------------------------
# Downloads
# ------------------------------------------------------------------------------------------

def test_download_success_verified_and_renamed(server, tmp_path, online):
    dest = tmp_path / "d" / "model.pth"
    out = download_file([f"{server.url}/w/model.pth"], dest, sha256=SHA, progress=False)
    assert out == dest and dest.read_bytes() == PAYLOAD
    assert not dest.with_name("model.pth.incomplete").exists()


def test_download_resumes_after_cut_off(server, tmp_path, online):
    server.cut_after["/w/model.pth"] = [1_000_000, 500_000]
    dest = tmp_path / "model.pth"
    download_file([f"{server.url}/w/model.pth"], dest, sha256=SHA, progress=False)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for p, r in server.requests]
    assert ranges == [None, "bytes=1000000-", "bytes=1500000-"]


def test_download_hash_mismatch_removes_the_file(server, tmp_path, online):
    dest = tmp_path / "model.pth"
    with pytest.raises(ChecksumMismatchError) as err:
        download_file([f"{server.url}/w/model.pth"], dest, sha256="0" * 64, progress=False)
    assert isinstance(err.value, ValueError)
    assert SHA in str(err.value) and "0" * 64 in str(err.value)
    assert not dest.exists() and not (tmp_path / "model.pth.incomplete").exists()


def test_download_falls_back_to_second_source(server, tmp_path, online):
    server.status["/hub/model.pth"] = 503
    dest = tmp_path / "model.pth"
    download_file([f"{server.url}/hub/model.pth", f"{server.url}/w/model.pth"], dest, sha256=SHA,
                  progress=False)
    assert dest.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/hub/model.pth", "/w/model.pth"]


def test_download_all_sources_fail(server, tmp_path, online):
    with pytest.raises(DownloadError) as err:
        download_file([f"{server.url}/missing.pth"], tmp_path / "m.pth", progress=False)
    assert isinstance(err.value, ConnectionError) and "404" in str(err.value)
    assert not (tmp_path / "m.pth").exists()


@pytest.mark.parametrize("on_hub", [False, True], ids=["sam-cdn", "gdino-hub"])
def test_download_error_suggests_hf_endpoint_only_for_hugging_face_sources(
    server, tmp_path, monkeypatch, online, on_hub
):
    """Issue 8: SAM files come only from Meta's CDN, where HF_ENDPOINT (a Hugging Face mirror)
    cannot help; the advice is given only when a source is on the Hugging Face hub."""
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    if on_hub:
        monkeypatch.setenv("HF_ENDPOINT", server.url)
        spec = ModelSpec("gdino", "gd_missing", "gd_missing.pth", TINY_SAM,
                         hf_repo="ShilongLiu/GroundingDINO", urls=(f"{server.url}/release/gd_missing.pth",))
    else:
        monkeypatch.delenv("HF_ENDPOINT", raising=False)
        spec = ModelSpec("sam", "sam_missing", "sam_missing.pth", TINY_SAM,
                         urls=(f"{server.url}/segment_anything/sam_missing.pth",))
    with pytest.raises(DownloadError) as err:
        resolve_checkpoint(spec, progress=False)
    msg = str(err.value)
    assert ("HF_ENDPOINT" in msg) is on_hub, msg
    assert "404" in msg and str(tmp_path) in msg
    assert all(url in msg for url in spec.sources())  # where to fetch it by hand
    assert len(server.requests) == len(spec.sources())


def test_resolve_downloads_into_weights_dir_through_the_hub_endpoint(server, tmp_path, monkeypatch, online):
    """The GroundingDINO path: HF_ENDPOINT (a mirror) first, then the release URL."""
    server.files["/ShilongLiu/GroundingDINO/resolve/main/gd_probe.pth"] = PAYLOAD
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    spec = ModelSpec("gdino", "gd_probe", "gd_probe.pth", TINY_SAM, sha256=SHA,
                     hf_repo="ShilongLiu/GroundingDINO", urls=(f"{server.url}/never.pth",))
    path = resolve_checkpoint(spec, progress=False)
    assert path == tmp_path / "gd_probe.pth" and path.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/ShilongLiu/GroundingDINO/resolve/main/gd_probe.pth"]
    resolve_checkpoint(spec, progress=False)  # second time: from disk, no request
    assert len(server.requests) == 1


def test_langsam_downloads_a_missing_sam_checkpoint(server, tmp_path, monkeypatch, online, gdino_ckpt, tiny_specs):
    """The whole public path: LangSAM() with no SAM file on disk fetches, verifies and loads it."""
    ck = tmp_path / "src.pth"
    write_sam_checkpoint(ck, TINY_SAM, seed=3)
    data = ck.read_bytes()
    server.files["/sam/tiny_dl.pth"] = data
    spec = register_model(tiny_sam_spec("tiny_dl", urls=(f"{server.url}/sam/tiny_dl.pth",),
                                        sha256=hashlib.sha256(data).hexdigest()))
    try:
        m = LangSAM("tiny_dl", gdino_type=tiny_specs[1].name, gdino_ckpt_path=gdino_ckpt, device="cpu")
    finally:
        unregister_model("sam", spec.name)
    hub = Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "tiny_dl.pth"
    assert hub.read_bytes() == data
    want = torch.load(ck, weights_only=True)
    got = m.sam.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in want.items())


def test_a_url_written_into_sam_models_is_where_the_file_comes_from(server, tmp_path, online, gdino_ckpt, tiny_specs):
    """2023 code pointed SAM_MODELS at a mirror; writing there did nothing (issue 14 item 8).
    Now it is the first source tried, and the registry's sha256 still guards what arrives."""
    from lang_sam import SAM_MODELS

    ck = tmp_path / "src.pth"
    write_sam_checkpoint(ck, TINY_SAM, seed=4)
    data = ck.read_bytes()
    server.files["/mirror/tiny_mirror.pth"] = data
    server.files["/bad-mirror/tiny_mirror.pth"] = data[:-1] + b"x"
    spec = register_model(tiny_sam_spec("tiny_mirror", urls=(f"{server.url}/official/tiny_mirror.pth",),
                                        sha256=hashlib.sha256(data).hexdigest()))
    try:
        assert SAM_MODELS["tiny_mirror"] == f"{server.url}/official/tiny_mirror.pth"
        SAM_MODELS["tiny_mirror"] = f"{server.url}/bad-mirror/tiny_mirror.pth"
        with pytest.raises(ChecksumMismatchError):  # a wrong file from the mirror is refused (the official 404s)
            LangSAM("tiny_mirror", gdino_type=tiny_specs[1].name, gdino_ckpt_path=gdino_ckpt, device="cpu")
        SAM_MODELS["tiny_mirror"] = f"{server.url}/mirror/tiny_mirror.pth"
        server.requests.clear()
        m = LangSAM("tiny_mirror", gdino_type=tiny_specs[1].name, gdino_ckpt_path=gdino_ckpt, device="cpu")
        assert [p for p, _ in server.requests] == ["/mirror/tiny_mirror.pth"]
        assert m.sam_type == "tiny_mirror"
        SAM_MODELS["tiny_mirror"] = str(ck)  # a local path: not what the dict ever held
        (Path(os.environ["TORCH_HOME"]) / "hub" / "checkpoints" / "tiny_mirror.pth").unlink()
        with pytest.raises(InvalidModelSourceError, match="LANG_SAM_WEIGHTS_DIR") as err:
            LangSAM("tiny_mirror", gdino_type=tiny_specs[1].name, gdino_ckpt_path=gdino_ckpt, device="cpu")
        assert isinstance(err.value, ValueError)
        assert (err.value.table, err.value.model, err.value.value) == ("SAM_MODELS", "tiny_mirror", str(ck))
    finally:
        unregister_model("sam", spec.name)
    assert "tiny_mirror" not in SAM_MODELS


# ------------------------------------------------------------------------------------------
# Loading
# ------------------------------------------------------------------------------------------

class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_pickled_objects_are_refused(tmp_path, monkeypatch):
    path = tmp_path / "evil.pth"
    torch.save({"w": torch.zeros(1), "x": _Evil()}, path)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    assert "weights_only" in str(err.value) and "LANG_SAM_TRUST_CHECKPOINTS" in str(err.value)


def test_pickled_file_with_an_official_hash_is_trusted(tmp_path, monkeypatch):
    path = tmp_path / "args.pth"
    import argparse
    torch.save({"model": {"w": torch.ones(2)}, "args": argparse.Namespace(a=1)}, path)
    with pytest.raises(UnsafeCheckpointError):
        load_checkpoint(path)
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    spec = register_model(ModelSpec("gdino", "official_probe", "x.pth", TINY_SAM, sha256=sha))
    try:
        assert torch.equal(load_checkpoint(path)["model"]["w"], torch.ones(2))
    finally:
        unregister_model("gdino", spec.name)


def _zip_bytes(obj) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


#: 11 bytes: a protocol-5 pickle whose BYTEARRAY8 declares 2**60 bytes.
ELEVEN_BYTES = b"\x80\x05\x96" + struct.pack("<Q", 2**60)

#: name -> (file content, what the error must say was found)
BAD_CHECKPOINTS = {
    "random bytes": (lambda: random.Random(0).randbytes(4096), "neither a zip archive"),
    "text file": (lambda: b"<html><body>404 Not Found</body></html>\n", "text"),
    "empty file": (lambda: b"", "empty"),
    "truncated zip": (lambda: _zip_bytes({"w": torch.zeros(64)})[:300], "truncated"),
    "pickled list": (lambda: _zip_bytes([torch.zeros(1)]), "holds a list"),
    "dict of non-tensors": (lambda: _zip_bytes({"a": 1, "b": "x"}), "'a': int"),
    "plain pickle": (lambda: pickle.dumps({"w": [1.0]}), "not a PyTorch checkpoint"),
    # Issue 18: 11 bytes declaring a 4-EiB string gave a bare MemoryError (a traceback in the CLI).
    # They are not unpickled at all now: only torch's legacy magic number starts a legacy file.
    "pickle declaring a huge string": (lambda: b"\x80\x04\x8d" + struct.pack("<Q", 2**62), "not a PyTorch checkpoint"),
    "pickle declaring huge bytes": (lambda: b"\x80\x04\x8e" + struct.pack("<Q", 2**60), "not a PyTorch checkpoint"),
    # Issue 25: unpickling these 11 bytes (a 1-EiB BYTEARRAY8) printed "SystemError: deallocated
    # bytearray object has exported buffers" on stderr beside the typed error.
    "pickle declaring a huge bytearray": (lambda: ELEVEN_BYTES, "not a PyTorch checkpoint"),
    "legacy magic, then a huge string": (
        lambda: pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + b"\x80\x04\x8d" + struct.pack("<Q", 2**62),
        "MemoryError"),
    "legacy magic, then a huge bytearray": (
        lambda: pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2) + ELEVEN_BYTES, "cannot read checkpoint"),
    "deeply nested pickle": (lambda: b"\x80\x02" + b"(" * 100_000 + b".", "not a PyTorch checkpoint"),
}


@pytest.mark.parametrize("trust", [False, True], ids=["untrusted", "trusted"])
@pytest.mark.parametrize("family", ["sam", "sam2", "gdino"])
@pytest.mark.parametrize("case", list(BAD_CHECKPOINTS))
def test_unusable_checkpoint_is_a_checkpoint_error_saying_what_was_found(
    tmp_path, monkeypatch, capfd, tiny_specs, case, family, trust
):
    """Issue 8: random bytes got the 'set LANG_SAM_TRUST_CHECKPOINTS=1' advice and, with it set, a
    raw UnpicklingError; a text file a raw KeyError. Only a real pickle of objects gets the advice.
    Issue 25: nothing but the typed error either (no SystemError printed on stderr by C code)."""
    from lang_sam.models.detector import GroundingDINODetector
    from lang_sam.models.sam2 import Sam2Segmenter
    from lang_sam.models.segmenter import SamSegmenter
    from lang_sam.testing import tiny_sam2_spec

    if trust:
        monkeypatch.setenv("LANG_SAM_TRUST_CHECKPOINTS", "1")
    content, found = BAD_CHECKPOINTS[case]
    path = tmp_path / f"bad_{family}.pth"
    path.write_bytes(content())
    spec, cls = {"sam": (tiny_specs[0], SamSegmenter), "sam2": (tiny_sam2_spec(), Sam2Segmenter),
                 "gdino": (tiny_specs[1], GroundingDINODetector)}[family]
    with pytest.raises(CheckpointError) as err:
        cls.from_spec(spec, path)
    msg = str(err.value)
    assert type(err.value) is CheckpointError, f"{type(err.value).__name__}: {msg}"
    assert str(path) in msg and found in msg, msg
    assert "LANG_SAM_TRUST_CHECKPOINTS" not in msg  # no advice to trust a file that is not a pickle of objects
    del err
    import gc

    gc.collect()  # whatever the failed read left is freed now, while stderr is captured
    assert capfd.readouterr().err == ""


#: ``cli_tiny.py predict`` arguments where one family's file is ``BAD`` (the others good tiny ones).
ELEVEN_BYTE_RUNS = {
    "sam": ["--sam-type", "tiny_sam", "--sam-ckpt", "BAD", "--gdino-type", "tiny_gdino", "--gdino-ckpt", "G"],
    "sam2": ["--sam-type", "sam2.1_hiera_tiny", "--sam-ckpt", "BAD", "--gdino-type", "tiny_gdino",
             "--gdino-ckpt", "G"],
    "gdino": ["--sam-type", "tiny_sam", "--sam-ckpt", "S", "--gdino-type", "tiny_gdino", "--gdino-ckpt", "BAD"],
}


@pytest.mark.parametrize("family", list(ELEVEN_BYTE_RUNS))
def test_an_eleven_byte_checkpoint_is_one_line_and_exit_3(tmp_path, family, sam_ckpt, gdino_ckpt):
    """Issue 25 item 5: the CLI printed ``SystemError: deallocated bytearray object has exported
    buffers`` beside the typed error for these 11 bytes; now only the error line, exit 3."""
    import subprocess
    import sys

    from PIL import Image

    bad = tmp_path / "bad.pth"
    bad.write_bytes(ELEVEN_BYTES)
    Image.new("RGB", (32, 24)).save(tmp_path / "a.png")
    files = {"BAD": str(bad), "S": str(sam_ckpt), "G": str(gdino_ckpt)}
    argv = [files.get(a, a) for a in ELEVEN_BYTE_RUNS[family]]
    helper = Path(__file__).resolve().parent / "cli_tiny.py"
    proc = subprocess.run([sys.executable, str(helper), "predict", str(tmp_path / "a.png"), "--prompt", "car",
                           "--output", str(tmp_path / "out"), "--device", "cpu", *argv],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "LANG_SAM_WEIGHTS_DIR": str(tmp_path / "w")})
    assert proc.returncode == 3, proc.stderr
    for word in ("SystemError", "Traceback", "MemoryError"):
        assert word not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and str(bad) in errors[0] and "not a PyTorch checkpoint" in errors[0], proc.stderr


class _Gone:
    """Pickled by reference to a module that is gone when the file is read."""


def test_a_pickle_of_objects_gets_the_trust_advice_and_typed_errors_once_trusted(tmp_path, monkeypatch):
    import sys
    import types

    path = tmp_path / "objects.pth"
    module = types.ModuleType("lang_sam_test_gone")
    _Gone.__module__ = module.__name__
    module._Gone = _Gone
    monkeypatch.setitem(sys.modules, module.__name__, module)
    torch.save({"w": torch.zeros(2), "extra": _Gone()}, path)
    monkeypatch.delitem(sys.modules, module.__name__)
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint(path)
    assert "lang_sam_test_gone._Gone" in str(err.value) and "LANG_SAM_TRUST_CHECKPOINTS=1" in str(err.value)
    monkeypatch.setenv("LANG_SAM_TRUST_CHECKPOINTS", "1")
    with pytest.raises(CheckpointError) as err:  # was a raw ModuleNotFoundError
        load_checkpoint(path)
    assert type(err.value) is CheckpointError
    assert str(path) in str(err.value) and "No module named 'lang_sam_test_gone'" in str(err.value)


def test_trusted_pickle_with_objects_in_the_state_dict_is_a_checkpoint_error(tmp_path, monkeypatch, tiny_specs):
    import argparse

    from lang_sam.models.segmenter import SamSegmenter

    path = tmp_path / "sam_args.pth"
    torch.save({"image_encoder.w": torch.zeros(2), "args": argparse.Namespace(a=1)}, path)
    with pytest.raises(UnsafeCheckpointError, match="argparse.Namespace"):
        SamSegmenter.from_spec(tiny_specs[0], path)
    monkeypatch.setenv("LANG_SAM_TRUST_CHECKPOINTS", "1")
    with pytest.raises(CheckpointError, match="'args': Namespace") as err:
        SamSegmenter.from_spec(tiny_specs[0], path)
    assert type(err.value) is CheckpointError


def test_legacy_torch_save_format_still_loads(tmp_path, sam_ckpt, tiny_specs):
    """torch.save(..., _use_new_zipfile_serialization=False) files are pickles, not zips."""
    from lang_sam.models.segmenter import SamSegmenter

    state = torch.load(sam_ckpt, weights_only=True)
    path = tmp_path / "legacy.pth"
    torch.save(state, path, _use_new_zipfile_serialization=False)
    assert not zipfile.is_zipfile(path)
    seg = SamSegmenter.from_spec(tiny_specs[0], path)
    got = seg.model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in state.items())


def test_wrong_architecture_says_which_type_it_looks_like(tmp_path, sam_ckpt, gdino_ckpt, tiny_specs):
    # a full-size vit_b checkpoint loaded as vit_h fails before vit_h is even built
    vit_b = tmp_path / "sam_vit_b.pth"
    write_sam_checkpoint(vit_b, "vit_b")
    with pytest.raises(CheckpointMismatchError) as err:
        LangSAM("vit_h", vit_b, gdino_type=tiny_specs[1].name, gdino_ckpt_path=gdino_ckpt, device="cpu")
    assert "looks like a 'vit_b' checkpoint" in str(err.value) and "sam_type='vit_b'" in str(err.value)
    # a GroundingDINO file given as SAM: matches no SAM type
    with pytest.raises(CheckpointMismatchError, match="matches none"):
        LangSAM(tiny_specs[0].name, gdino_ckpt, gdino_type=tiny_specs[1].name,
                gdino_ckpt_path=gdino_ckpt, device="cpu")
    # the tiny GroundingDINO checkpoint as swint
    with pytest.raises(CheckpointMismatchError, match="tiny_gdino"):
        LangSAM(tiny_specs[0].name, sam_ckpt, gdino_type="swint", gdino_ckpt_path=gdino_ckpt, device="cpu")


def test_missing_and_unexpected_keys(tmp_path, sam_ckpt, gdino_ckpt, tiny_specs):
    state = torch.load(sam_ckpt, weights_only=True)
    dropped = dict(state)
    dropped.pop("mask_decoder.iou_token.weight")
    torch.save(dropped, tmp_path / "missing.pth")
    with pytest.raises(CheckpointMismatchError, match="1 missing keys: mask_decoder.iou_token.weight"):
        LangSAM(tiny_specs[0].name, tmp_path / "missing.pth", gdino_type=tiny_specs[1].name,
                gdino_ckpt_path=gdino_ckpt, device="cpu")
    torch.save({**state, "extra.weight": torch.zeros(1)}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointMismatchError, match="1 unexpected keys: extra.weight"):
        LangSAM(tiny_specs[0].name, tmp_path / "extra.pth", gdino_type=tiny_specs[1].name,
                gdino_ckpt_path=gdino_ckpt, device="cpu")


def test_released_format_quirks_are_accepted(tmp_path, sam_ckpt, gdino_ckpt, tiny_specs):
    """`module.` prefixes, `label_enc.weight` and `bert.embeddings.position_ids` load fine."""
    ck = torch.load(gdino_ckpt, weights_only=True)
    state = {"module." + k: v for k, v in ck["model"].items()}
    state["module.bert.embeddings.position_ids"] = torch.arange(512)[None]
    assert "module.label_enc.weight" in state
    torch.save({"model": state}, tmp_path / "gd.pth")
    m = LangSAM(tiny_specs[0].name, sam_ckpt, gdino_type=tiny_specs[1].name,
                gdino_ckpt_path=tmp_path / "gd.pth", device="cpu")
    got = m.groundingdino.state_dict()
    assert torch.equal(got["feat_map.weight"], ck["model"]["feat_map.weight"])


def test_concurrent_downloads_fetch_once(server, tmp_path, online):
    """Two downloaders of one file: the lock makes the second wait and reuse the first's file."""
    import threading

    dest = tmp_path / "model.pth"
    results, errors = [], []

    def fetch():
        try:
            results.append(download_file([f"{server.url}/w/model.pth"], dest, sha256=SHA, progress=False))
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=fetch) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors and results == [dest, dest] and dest.read_bytes() == PAYLOAD
    assert [p for p, _ in server.requests] == ["/w/model.pth"]


def test_switching_source_never_splices_bytes(server, tmp_path, online):
    """A source cut off for good is abandoned; the next one starts from byte 0."""
    server.files["/a/model.pth"] = PAYLOAD
    server.cut_after["/a/model.pth"] = [1000, 1000, 1000]
    dest = tmp_path / "model.pth"
    download_file([f"{server.url}/a/model.pth", f"{server.url}/w/model.pth"], dest, sha256=SHA,
                  progress=False, retries=3)
    assert dest.read_bytes() == PAYLOAD
    assert server.requests[-1] == ("/w/model.pth", None)


# ------------------------------------------------------------------------------------------
# Missing weights: one message for every missing file, and the ways out (issue 19, item 3)
# ------------------------------------------------------------------------------------------

def _refused_url(path: str) -> str:
    """A URL on a local port where nothing listens (the connection is refused)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}{path}"


@pytest.mark.parametrize("how", ["offline", "http-404", "refused"])
def test_langsam_lists_every_missing_file_and_the_ways_to_provide_them(server, monkeypatch, how):
    """Issue 19: the error named only GroundingDINO's file (SAM's would fail next), never said how
    to get the files, and left a .lock in the torch hub cache."""
    if how == "offline":
        monkeypatch.setenv("LANG_SAM_OFFLINE", "1")
    else:
        monkeypatch.delenv("LANG_SAM_OFFLINE", raising=False)
    url = _refused_url if how == "refused" else lambda path: server.url + path
    sam = register_model(tiny_sam_spec("gone_sam", urls=(url("/sam/gone_sam.pth"),)))
    gdino = register_model(tiny_gdino_spec("gone_gdino", urls=(url("/gd/gone_gdino.pth"),)))
    try:
        with pytest.raises(MissingWeightsError) as err:
            LangSAM("gone_sam", gdino_type="gone_gdino", device="cpu")
    finally:
        unregister_model("sam", sam.name)
        unregister_model("gdino", gdino.name)
    e = err.value
    assert isinstance(e, WeightsNotFoundError) and isinstance(e, DownloadError)  # old excepts still catch it
    assert e.filenames == ["gone_gdino.pth", "gone_sam.pth"]
    assert [(m.family, m.name) for m in e.missing] == [("gdino", "gone_gdino"), ("sam", "gone_sam")]
    why = {"offline": "offline mode is on", "http-404": "HTTP 404", "refused": "refused"}[how]
    assert all(why in m.reason for m in e.missing), e.missing
    msg = str(e)
    assert "gone_gdino.pth" in msg and "gone_sam.pth" in msg
    assert "lang-sam download --gdino-type gone_gdino --sam-type gone_sam --to DIR" in msg
    assert "LANG_SAM_WEIGHTS_DIR=DIR" in msg and "LANG_SAM_OFFLINE=1" in msg
    assert "ckpt_path=" in msg and "gdino_ckpt_path=" in msg
    hub = Path(os.environ["TORCH_HOME"])
    assert [p.name for p in hub.rglob("*") if p.is_file()] == [], "no .lock or .incomplete is left"
    tried = sorted(p for p, _ in server.requests)
    assert tried == ([] if how != "http-404" else ["/gd/gone_gdino.pth", "/sam/gone_sam.pth"])


def test_a_found_file_is_not_listed_as_missing(monkeypatch, sam_ckpt, tiny_specs):
    """With SAM's file on disk, only GroundingDINO's is reported (and only its type is downloaded)."""
    gdino = register_model(tiny_gdino_spec("gone_gdino2"))
    try:
        with pytest.raises(MissingWeightsError) as err:
            LangSAM(tiny_specs[0].name, sam_ckpt, gdino_type="gone_gdino2", device="cpu")
    finally:
        unregister_model("gdino", gdino.name)
    assert err.value.filenames == ["gone_gdino2.pth"]
    assert "lang-sam download --gdino-type gone_gdino2 --to DIR" in str(err.value)
    assert tiny_specs[0].filename not in str(err.value)


@pytest.mark.parametrize("status", [200, 404])
def test_downloads_leave_no_lock_file(server, tmp_path, online, status):
    dest = tmp_path / "model.pth"
    if status == 200:
        download_file([f"{server.url}/w/model.pth"], dest, sha256=SHA, progress=False)
    else:
        with pytest.raises(DownloadError):
            download_file([f"{server.url}/nothing.pth"], dest, progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == (["model.pth"] if status == 200 else [])


@pytest.mark.slow
def test_segment_example_without_weights_prints_the_message_and_exits_3(tmp_path):
    """The README's main command with no weights (offline): the message, no traceback, exit 3."""
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    proc = subprocess.run(
        [sys.executable, str(root / "examples" / "segment.py"), str(root / "assets" / "cat.jpg"), "cat",
         "--output", str(tmp_path / "o.png")],
        capture_output=True, text=True, timeout=300, env={**os.environ, "LANG_SAM_OFFLINE": "1"},
    )
    assert proc.returncode == 3, proc.stderr
    assert "Traceback" not in proc.stderr
    for name in ("groundingdino_swinb_cogcoor.pth", "sam_vit_h_4b8939.pth", "lang-sam download",
                 "LANG_SAM_WEIGHTS_DIR", "LANG_SAM_OFFLINE"):
        assert name in proc.stderr
    assert not (tmp_path / "o.png").exists()
    assert [p for p in Path(os.environ["TORCH_HOME"]).rglob("*") if p.is_file()] == []


def test_the_download_lock_excludes_and_leaves_no_file(tmp_path):
    """The lock is deleted on release; holders never overlap, also while the file comes and goes."""
    import threading
    import time

    from lang_sam.hub.download import _file_lock

    lock = tmp_path / "m.pth.lock"
    holders, most, errors = [], [0], []

    def work():
        try:
            for _ in range(25):
                with _file_lock(lock):
                    holders.append(1)
                    most[0] = max(most[0], len(holders))
                    time.sleep(0.001)
                    holders.pop()
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and most[0] == 1
    assert list(tmp_path.iterdir()) == []


def test_a_broken_hugging_face_cache_is_said_not_skipped_silently(monkeypatch, caplog, tmp_path):
    """Issue 14 item 8: a cache that could not be read turned silently into a re-download."""
    import logging

    import huggingface_hub

    from lang_sam.hub.resolve import _hf_cached

    def broken(**kwargs):
        raise OSError("refs/main is not a file")

    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", broken)
    with caplog.at_level(logging.WARNING, logger="lang_sam"):
        assert _hf_cached("ShilongLiu/GroundingDINO", "groundingdino_swint_ogc.pth") is None
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    text = record.getMessage()
    assert "Hugging Face cache" in text and "groundingdino_swint_ogc.pth" in text and "refs/main" in text
