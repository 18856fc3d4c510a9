"""SAM 3's weights (a gated hub folder) and the CLI / server around it: resolution from the weights
folder and offline, downloads from a real local HTTP server standing in for the hub (with a
token; typed errors for a gated repository and a missing token), ``lang-sam download`` / ``info``,
``lang-sam predict --sam-type sam3`` with every format, and the HTTP server."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import make_image
from http_server import FileServer
from lang_sam.cli import main
from lang_sam.errors import (
    AccessDeniedError,
    DownloadError,
    GatedModelError,
    MissingTokenError,
    WeightsNotFoundError,
)
from lang_sam.hub import resolve_checkpoint
from lang_sam.models.registry import get_spec
from lang_sam.models.sam3 import SAM3_FILES
from lang_sam.testing import write_sam3_folder

pytest.importorskip("transformers.models.sam3", reason="SAM 3 needs transformers>=5")

SPEC = get_spec("sam", "sam3")
TOKEN = "hf_test_token_0123"


@pytest.fixture(scope="module")
def sam3_dir(tmp_path_factory) -> Path:
    return write_sam3_folder(tmp_path_factory.mktemp("sam3w") / "sam3", "tiny", seed=1)


@pytest.fixture
def hub(sam3_dir, monkeypatch):
    """The local server as the hub: facebook/sam3's files, gated behind TOKEN."""
    monkeypatch.delenv("LANG_SAM_OFFLINE", raising=False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with FileServer() as s:
        for f in SAM3_FILES:
            path = f"/facebook/sam3/resolve/main/{f}"
            s.files[path] = (sam3_dir / f).read_bytes()
            s.tokens[path] = TOKEN
        monkeypatch.setenv("HF_ENDPOINT", s.url)
        yield s


@pytest.mark.parametrize("how", ["argument", "env"])
def test_download_with_a_token_fetches_every_file(hub, tmp_path, monkeypatch, sam3_dir, how):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    if how == "env":
        monkeypatch.setenv("HF_TOKEN", TOKEN)
    folder = resolve_checkpoint(SPEC, progress=False, token=TOKEN if how == "argument" else None)
    assert folder == tmp_path / "sam3"
    for f in SAM3_FILES:
        assert (folder / f).read_bytes() == (sam3_dir / f).read_bytes()
    assert {a for _, a in hub.auth_seen} == {f"Bearer {TOKEN}"}
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith((".incomplete", ".lock"))]
    n = len(hub.requests)
    assert resolve_checkpoint(SPEC, progress=False) == folder and len(hub.requests) == n  # on disk now


@pytest.mark.parametrize("token, error, status, words", [
    (None, MissingTokenError, 401, "no access token was given"),
    ("hf_wrong", GatedModelError, 403, "gated: request access at https://huggingface.co/facebook/sam3"),
])
def test_gated_refusals_are_typed(hub, tmp_path, monkeypatch, token, error, status, words):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no_login"))  # no stored token either
    with pytest.raises(error) as info:
        resolve_checkpoint(SPEC, progress=False, token=token)
    err = info.value
    assert type(err) is error and isinstance(err, (AccessDeniedError, DownloadError, PermissionError))
    assert words in str(err) and err.status == status and err.repo == "facebook/sam3"
    assert err.access_url == "https://huggingface.co/facebook/sam3"
    assert not (tmp_path / "sam3" / "config.json").exists()


def test_the_token_is_not_sent_to_the_host_a_redirect_leads_to(hub, tmp_path, monkeypatch, sam3_dir):
    """The hub redirects large files to its CDN: the Authorization header stays behind."""
    with FileServer() as cdn:
        cdn.files["/blob"] = (sam3_dir / "model.safetensors").read_bytes()
        hub.redirects["/facebook/sam3/resolve/main/model.safetensors"] = f"{cdn.url}/blob"
        monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
        folder = resolve_checkpoint(SPEC, progress=False, token=TOKEN)
        assert (folder / "model.safetensors").read_bytes() == cdn.files["/blob"]
        assert cdn.auth_seen == [("/blob", None)]


def test_weights_dir_and_offline_resolution(sam3_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    with pytest.raises(WeightsNotFoundError, match="offline mode is on"):
        resolve_checkpoint(SPEC, progress=False)
    shutil.copytree(sam3_dir, tmp_path / "sam3")
    assert resolve_checkpoint(SPEC, progress=False) == tmp_path / "sam3"
    (tmp_path / "sam3" / "tokenizer.json").unlink()  # an incomplete folder is not a hit
    with pytest.raises(WeightsNotFoundError):
        resolve_checkpoint(SPEC, progress=False)
    with pytest.raises(WeightsNotFoundError, match="missing: tokenizer.json"):
        resolve_checkpoint(SPEC, tmp_path / "sam3", progress=False)


def test_a_hub_repo_id_as_ckpt_path_is_fetched(hub, tmp_path, monkeypatch, sam3_dir):
    for f in SAM3_FILES:
        hub.files[f"/me/sam3-copy/resolve/main/{f}"] = (sam3_dir / f).read_bytes()
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    folder = resolve_checkpoint(SPEC, "me/sam3-copy", progress=False)
    assert folder == tmp_path / "me--sam3-copy" and (folder / "config.json").is_file()


def test_cli_download_and_info(hub, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path / "w"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "no_login"))
    assert main(["download", "--sam-type", "sam3", "--to", str(tmp_path / "d")]) == 3
    err = capsys.readouterr().err
    assert "no access token was given" in err and "https://huggingface.co/facebook/sam3" in err
    assert main(["download", "--sam-type", "sam3", "--to", str(tmp_path / "d"), "--token", TOKEN]) == 0
    out = capsys.readouterr().out
    assert "config.json model_type 'sam3'" in out
    assert sorted(p.name for p in (tmp_path / "d" / "sam3").iterdir()) == sorted(SAM3_FILES)
    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path / "d"))
    assert main(["info"]) == 0
    info = capsys.readouterr().out
    assert f"sam3: sam3/: found: {tmp_path / 'd' / 'sam3'}" in info


def test_cli_predict_sam3_every_format(sam3_dir, tmp_path, capsys):
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(make_image(60, 80, 1)).save(imgs / "a.png")
    Image.fromarray(make_image(50, 70, 3)).save(imgs / "b.jpg")
    out = tmp_path / "out"
    rc = main(["predict", str(imgs), "--classes", "car=car. automobile", "--classes", "wheel",
               "--output", str(out), "--format", "overlay,masks,coco,labelme,yolo", "--nms", "0.9",
               "--box-threshold", "0.25", "-q", "--sam-type", "sam3", "--sam-ckpt", str(sam3_dir),
               "--device", "cpu"])
    assert rc == 0, capsys.readouterr()
    from pycocotools.coco import COCO

    coco = COCO(str(out / "coco" / "annotations.json"))
    assert {im["file_name"] for im in coco.dataset["images"]} == {"a.png", "b.jpg"}
    anns = coco.dataset["annotations"]
    assert anns and {c["name"] for c in coco.dataset["categories"]} <= {"car", "wheel"}
    for a in anns:
        im = coco.imgs[a["image_id"]]
        mask = coco.annToMask(a).astype(bool)
        assert mask.shape == (im["height"], im["width"]) and a["area"] == int(mask.sum())
    for key in ("a", "b"):
        d = json.loads((out / "labelme" / f"{key}.json").read_text())
        assert all(s["label"] in ("car", "wheel") for s in d["shapes"])
        pngs = sorted((out / "masks" / key).glob("*.png"))
        assert len(pngs) == len([a for a in anns if coco.imgs[a["image_id"]]["file_name"].startswith(key)])
        for row in (out / "yolo" / "labels" / f"{key}.txt").read_text().splitlines():
            xy = np.array(row.split()[1:], dtype=float)
            assert row.split()[0] in ("0", "1") and (xy >= 0).all() and (xy <= 1).all()
        assert np.asarray(Image.open(out / "overlays" / f"{key}.png")).ndim == 3


def test_server_predicts_with_sam3_and_refuses_box_prompts(sam3_dir):
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from lang_sam import LangSAM
    from lang_sam.serving.server import create_app
    from lang_sam.serving.service import ModelService

    service = ModelService(sam_type="sam3", sam_ckpt=str(sam3_dir), device="cpu")
    client = TestClient(create_app(service, mount_demo=False), raise_server_exceptions=False)
    img = Image.fromarray(make_image(40, 50, 2))
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    r = client.post("/predict", files={"image": ("x.png", buf.getvalue(), "image/png")},
                    data={"text_prompt": "cat", "box_threshold": "0.25"})
    assert r.status_code == 200, r.text
    body = r.json()
    direct = LangSAM(sam_type="sam3", ckpt_path=sam3_dir, device="cpu").predict(img, "cat", 0.25)
    assert body["sam_type"] == "sam3" and len(body["detections"] if "detections" in body else body["phrases"]) \
        == min(len(direct.phrases), service.max_detections)
    r = client.post("/segment", files={"image": ("x.png", buf.getvalue(), "image/png")},
                    data={"boxes": "[[1, 1, 20, 20]]"})
    assert r.status_code in (400, 422), r.text
    assert "no box, point or mask prompt" in r.text


@pytest.mark.slow
def test_ray_with_sam3_equals_one_process(sam3_dir, tmp_path, capsys, monkeypatch):
    """``lang-sam predict --ray --sam-type sam3``: the workers load SAM 3 alone (no GroundingDINO
    file exists here) and write the same files as one process."""
    import logging

    import torch

    ray = pytest.importorskip("ray")
    pytest.importorskip("ray.data")
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    Image.fromarray(make_image(60, 80, 1)).save(imgs / "a.png")
    Image.fromarray(make_image(50, 70, 3)).save(imgs / "b.jpg")
    args = ["--prompt", "car. wheel", "--format", "overlay,masks,coco,labelme,yolo", "--box-threshold",
            "0.25", "-q", "--sam-type", "sam3", "--sam-ckpt", str(sam3_dir)]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert main(["predict", str(imgs), "--output", str(tmp_path / "one"), "--device", "cpu", *args]) == 0
    finally:
        torch.set_num_threads(threads)
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    try:
        rc = main(["predict", str(imgs), "--output", str(tmp_path / "ray"), "--ray", "--workers", "2",
                   "--cpus-per-worker", "1", *args])
    finally:
        ray.shutdown()
    assert rc == 0, capsys.readouterr()

    def tree(root):
        return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*"))
                if p.is_file() and ".lang-sam" not in p.parts}

    one, distributed = tree(tmp_path / "one"), tree(tmp_path / "ray")
    assert sorted(one) == sorted(distributed) and any(k.startswith("coco/") for k in one)
    assert [k for k in one if one[k] != distributed[k]] == []


def test_the_demo_offers_sam3_only_when_its_weights_are_present(tmp_path, monkeypatch):
    """The gated SAM 3 is in the demo's model list when its folder is in the weights folder (or it
    is the model loaded), not otherwise; the other types always are."""
    from lang_sam.serving.app import sam_choices
    from lang_sam.testing import write_sam3_folder

    monkeypatch.setenv("LANG_SAM_WEIGHTS_DIR", str(tmp_path))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    without = sam_choices()
    assert "sam3" not in without and {"vit_h", "sam2.1_hiera_tiny"} <= set(without)
    assert "sam3" in sam_choices("sam3")
    write_sam3_folder(tmp_path / "sam3", "tiny")
    assert sam_choices() == sorted(without + ["sam3"])


def _config(change):
    def mutate(folder: Path) -> None:
        config = json.loads((folder / "config.json").read_text())
        change(config)
        (folder / "config.json").write_text(json.dumps(config))
    return mutate


def _weights(change):
    def mutate(folder: Path) -> None:
        path = folder / "model.safetensors"
        path.write_bytes(change(path.read_bytes()))
    return mutate


def _header(change):
    """Rewrite model.safetensors' JSON header (``change(header)``), the data left as it is."""
    import struct

    def rewrite(data: bytes) -> bytes:
        (n,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + n])
        change(header, next(k for k in sorted(header) if k != "__metadata__"))
        raw = json.dumps(header).encode()
        return struct.pack("<Q", len(raw)) + raw + data[8 + n:]
    return _weights(rewrite)


def _state(change):
    """Rewrite model.safetensors through safetensors (a well-formed file of other tensors)."""
    def mutate(folder: Path) -> None:
        from safetensors.torch import load_file, save_file

        state = load_file(folder / "model.safetensors")
        change(state, sorted(state)[0])
        save_file(state, folder / "model.safetensors", metadata={"format": "pt"})
    return mutate


def _u64(n: int) -> bytes:
    import struct

    return struct.pack("<Q", n)


def _set(section: str, key: str, value):
    return _config(lambda c: c[section].__setitem__(key, value))


#: id -> (how the folder is damaged, the file the error names, words of the message). Issue 25 item
#: 4: each of these gave transformers', huggingface_hub's or safetensors' own exception (a
#: traceback and exit 1 from the CLI), or a raw AttributeError.
BAD_FOLDERS = {
    "config: a string for an int": (_set("detr_decoder_config", "num_layers", "two"), "config.json",
                                    "expected int, got str"),
    "config: a float for an int": (_set("detr_decoder_config", "hidden_size", 32.5), "config.json",
                                   "expected int, got float"),
    "config: null for an int": (_set("detr_decoder_config", "num_layers", None), "config.json", "expected int"),
    "config: a list for a dict": (_config(lambda c: c.__setitem__("detr_decoder_config", [1, 2])),
                                  "config.json", "detr_decoder_config"),
    "config: a string for a dict": (_config(lambda c: c.__setitem__("vision_config", "x")), "config.json",
                                    "vision_config"),
    "config: a negative size": (_set("detr_decoder_config", "num_queries", -1), "config.json", "negative"),
    "config: a list": (lambda f: (f / "config.json").write_text("[1]"), "config.json", "expected an object"),
    "config: not JSON": (lambda f: (f / "config.json").write_text("{oops"), "config.json", "JSONDecodeError"),
    "processor config: a list": (lambda f: (f / "processor_config.json").write_text("[]"),
                                 "processor_config.json", "expected an object"),
    "tokenizer config: a list": (lambda f: (f / "tokenizer_config.json").write_text("[]"),
                                 "tokenizer_config.json", "expected an object"),
    "tokenizer: not JSON": (lambda f: (f / "tokenizer.json").write_text("{"), "tokenizer.json", "JSONDecodeError"),
    "weights: empty": (_weights(lambda b: b""), "model.safetensors", "shorter than its 8-byte header length"),
    "weights: 11 bytes": (_weights(lambda b: b"\x80\x05\x96" + _u64(2**60)), "model.safetensors",
                          "expected at most 3"),
    "weights: truncated to half": (_weights(lambda b: b[:len(b) // 2]), "model.safetensors", "truncated"),
    "weights: truncated in the header": (_weights(lambda b: b[:100]), "model.safetensors", "expected at most 92"),
    "weights: header length 2**63": (_weights(lambda b: _u64(2**63) + b[8:]), "model.safetensors",
                                     "9,223,372,036,854,775,808-byte header"),
    "weights: header length 2**64-1": (_weights(lambda b: _u64(2**64 - 1) + b[8:]), "model.safetensors",
                                       "-byte header, expected at most"),
    "weights: header not UTF-8": (_weights(lambda b: b[:8] + b"\xff" * (len(b) - 8)), "model.safetensors",
                                  "not UTF-8 JSON"),
    "weights: header not JSON": (_weights(lambda b: _u64(5) + b"{{{{{" + b[8:]), "model.safetensors",
                                 "not UTF-8 JSON"),
    "weights: header a list": (_weights(lambda b: _u64(2) + b"[]"), "model.safetensors", "expected an object"),
    "weights: header deeply nested": (_weights(lambda b: _u64(200_000) + b"[" * 100_000 + b"]" * 100_000),
                                      "model.safetensors", "not UTF-8 JSON"),
    "weights: unknown dtype": (_header(lambda h, k: h[k].__setitem__("dtype", "Q99")), "model.safetensors",
                               "dtype 'Q99'"),
    "weights: shape not ints": (_header(lambda h, k: h[k].__setitem__("shape", ["32"])), "model.safetensors",
                                "expected a list of integers"),
    "weights: shape beyond its bytes": (_header(lambda h, k: h[k].__setitem__("shape", [10**12])),
                                        "model.safetensors", "expected them to agree"),
    "weights: offsets beyond the file": (_header(lambda h, k: h[k].__setitem__("data_offsets", [0, 10**15])),
                                         "model.safetensors", "data_offsets [0, 1000000000000000]"),
    "weights: offsets reversed": (_header(lambda h, k: h[k].__setitem__("data_offsets", [128, 0])),
                                  "model.safetensors", "0 <= begin <= end"),
    "weights: overlapping tensors": (
        _header(lambda h, k: [v.__setitem__("data_offsets", [0, 128]) for n, v in h.items()
                              if n != "__metadata__" and v["data_offsets"][1] - v["data_offsets"][0] == 128]),
        "model.safetensors", "overlaps"),
    "weights: metadata not strings": (_header(lambda h, k: h.__setitem__("__metadata__", {"format": 1})),
                                      "model.safetensors", "__metadata__"),
    "weights: a tensor missing": (_state(lambda s, k: s.pop(k)), "model.safetensors", "1 missing weights"),
    "weights: a tensor of another shape": (_state(lambda s, k: s.__setitem__(k, s[k].reshape(-1)[:5].clone())),
                                           "model.safetensors", "shape mismatches"),
}


@pytest.mark.parametrize("case", list(BAD_FOLDERS))
def test_a_damaged_sam3_folder_is_a_checkpoint_error_naming_the_file(case, sam3_dir, tmp_path):
    from lang_sam import LangSAM
    from lang_sam.errors import CheckpointError

    folder = tmp_path / "sam3"
    shutil.copytree(sam3_dir, folder)
    damage, file, words = BAD_FOLDERS[case]
    damage(folder)
    with pytest.raises(CheckpointError) as err:
        LangSAM(sam_type="sam3", ckpt_path=folder, device="cpu")
    msg = str(err.value)
    assert str(folder) in msg and file in msg and words in msg, msg
    assert "\n" not in msg


@pytest.mark.parametrize("case", ["config: a string for an int", "config: a list for a dict",
                                  "weights: truncated to half", "weights: header length 2**63",
                                  "weights: header not UTF-8", "weights: 11 bytes"])
def test_cli_with_a_damaged_sam3_folder_says_one_line_and_exits_3(case, sam3_dir, tmp_path, capfd):
    folder = tmp_path / "sam3"
    shutil.copytree(sam3_dir, folder)
    BAD_FOLDERS[case][0](folder)
    Image.fromarray(make_image(40, 50, 2)).save(tmp_path / "a.png")
    rc = main(["predict", str(tmp_path / "a.png"), "--prompt", "cat", "--output", str(tmp_path / "out"),
               "--sam-type", "sam3", "--sam-ckpt", str(folder), "--device", "cpu"])
    err = capfd.readouterr().err
    assert rc == 3, err
    assert "Traceback" not in err and "SystemError" not in err
    errors = [line for line in err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("lang-sam predict: error: ") and str(folder) in errors[0], err
    assert not (tmp_path / "out" / "coco").exists()
