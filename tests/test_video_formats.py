"""The four formats of ``lang-sam track`` (lang_sam.labeling.video_formats), each written from
synthetic :class:`TrackedFrame` s and parsed back with an independent reader: ``csv`` for MOT,
pycocotools for COCO, PIL/numpy for the 16-bit PNGs, PyAV for the overlay mp4."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from lang_sam.errors import InvalidArgumentError
from lang_sam.labeling import video_formats as vf
from lang_sam.results import TrackedFrame

H, W = 48, 64


def square(x0, y0, x1, y1, size=(H, W)) -> np.ndarray:
    m = np.zeros(size, bool)
    m[y0:y1, x0:x1] = True
    return m


def frame(index: int, objects: list[tuple[int, tuple[int, int, int, int], float, str]],
          size=(H, W)) -> TrackedFrame:
    """A TrackedFrame of axis-aligned rectangles: ``(track id, (x0, y0, x1, y1), score, phrase)``."""
    masks = np.stack([square(*box, size=size) for _, box, _, _ in objects]) if objects else np.zeros((0, *size), bool)
    return TrackedFrame.checked(
        index, torch.from_numpy(masks),
        torch.tensor([box for _, box, _, _ in objects], dtype=torch.float32).reshape(-1, 4),
        torch.tensor([tid for tid, _, _, _ in objects], dtype=torch.int64),
        torch.tensor([s for _, _, s, _ in objects], dtype=torch.float32),
        [p for _, _, _, p in objects], size)


def clip() -> list[TrackedFrame]:
    """An empty first frame; a car from frame 1 moving right; a wheel (track 2) appearing on frame
    2 inside the car's box; the car gone on frame 4."""
    return [
        frame(0, []),
        frame(1, [(1, (4, 8, 24, 28), 0.9, "car")]),
        frame(2, [(1, (8, 8, 28, 28), 0.9, "car"), (2, (10, 20, 16, 26), 0.45, "wheel")]),
        frame(3, [(1, (12, 8, 32, 28), 0.9, "car"), (2, (14, 20, 20, 26), 0.45, "wheel")]),
        frame(4, [(2, (18, 20, 24, 26), 0.45, "wheel")]),
    ]


def pixels(i: int) -> np.ndarray:
    rng = np.random.default_rng(i)
    return (rng.integers(90, 110, (H, W, 3))).astype(np.uint8)


def test_mot_lines_parse_back_with_csv(tmp_path):
    w = vf.MotWriter(tmp_path / "mot" / "a" / "b.txt", tmp_path)
    for f in clip():
        w.add(f)
    assert w.close() == ["mot/a/b.txt"]
    rows = list(csv.reader((tmp_path / "mot" / "a" / "b.txt").read_text().splitlines()))
    want = [(f.frame_index + 1, tid, box, s) for f in clip()
            for tid, box, s in zip(f.track_ids.tolist(), f.boxes.tolist(), f.scores.tolist())]
    assert len(rows) == len(want) == 6
    for row, (fr, tid, (x0, y0, x1, y1), s) in zip(rows, want):
        assert len(row) == 10 and row[7:] == ["-1", "-1", "-1"]
        assert (int(row[0]), int(row[1])) == (fr, tid)
        assert [float(v) for v in row[2:6]] == pytest.approx([x0, y0, x1 - x0, y1 - y0], abs=0.005)
        assert float(row[6]) == pytest.approx(s, abs=5e-5)
    assert min(int(r[0]) for r in rows) == 2  # frame 0 (index) is empty; numbering starts at 1


def test_coco_dataset_parses_with_pycocotools(tmp_path):
    from pycocotools.coco import COCO

    a, b = vf.CocoVideoRecord("cams/a", "cams/a.mp4"), vf.CocoVideoRecord("b", "b.mkv")
    for f in clip():
        a.add(f)
    b.add(frame(0, [(1, (0, 0, 10, 10), 0.5, "Wheel."), (2, (30, 30, 40, 40), 0.6, "")]))
    path = tmp_path / "annotations.json"
    path.write_text(json.dumps(vf.coco_dataset([a.frames, b.frames])))
    coco = COCO(str(path))
    images = [coco.imgs[i] for i in sorted(coco.imgs)]
    assert [im["file_name"] for im in images] == [f"cams/a/{i:06d}.jpg" for i in range(5)] + ["b/000000.jpg"]
    assert [(im["video"], im["frame_index"]) for im in images] == \
        [("cams/a.mp4", i) for i in range(5)] + [("b.mkv", 0)]
    assert {c["name"]: c["id"] for c in coco.loadCats(coco.getCatIds())} == {"car": 1, "wheel": 2, "object": 3}
    for img_id, f in zip(sorted(coco.imgs), clip()):
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[img_id]))
        assert [a["track_id"] for a in anns] == f.track_ids.tolist()
        for ann, m, s, p in zip(anns, f.masks.numpy(), f.scores.tolist(), f.phrases):
            assert np.array_equal(coco.annToMask(ann).astype(bool), m)
            assert ann["area"] == int(m.sum()) and ann["score"] == pytest.approx(s, abs=1e-6)
            assert coco.cats[ann["category_id"]]["name"] == p
    last = coco.loadAnns(coco.getAnnIds(imgIds=[6]))
    assert [(a["track_id"], coco.cats[a["category_id"]]["name"]) for a in last] == [(1, "wheel"), (2, "object")]
    assert len({a["id"] for a in coco.dataset["annotations"]}) == len(coco.dataset["annotations"]) == 8


def test_track_pngs_are_16_bit_ids(tmp_path):
    w = vf.TrackPngWriter(tmp_path / "masks" / "v", tmp_path)
    frames = clip() + [frame(5, [(70000 - 4465, (0, 0, 8, 8), 0.5, "car")])]  # id 65535
    for f in frames:
        w.add(f)
    names = w.close()
    assert names == [f"masks/v/{i:06d}.png" for i in range(6)]
    for name, f in zip(names, frames):
        with Image.open(tmp_path / name) as im:
            assert im.mode in ("I;16", "I") and im.size == (W, H)
            got = np.asarray(im).astype(np.int64)
        want = np.zeros((H, W), np.int64)
        for m, tid in sorted(zip(f.masks.numpy(), f.track_ids.tolist()), key=lambda t: -t[0].sum()):
            want[m] = tid
        assert np.array_equal(got, want)
    with Image.open(tmp_path / names[2]) as im:
        ids = np.asarray(im).astype(np.int64)
    assert ids[22, 12] == 2  # the wheel lies inside the car: the smaller mask's id is kept
    assert ids[10, 10] == 1 and ids[0, 0] == 0
    with Image.open(tmp_path / names[5]) as im:
        assert int(np.asarray(im).max()) == 65535


@pytest.mark.parametrize("existing", [False, True], ids=["new folder", "folder of an earlier run"])
def test_track_pngs_appear_when_the_video_is_done_and_never_after_an_abort(tmp_path, existing):
    folder = tmp_path / "masks" / "v"
    if existing:
        folder.mkdir(parents=True)
        (folder / "notes.txt").write_text("mine")
    w = vf.TrackPngWriter(folder, tmp_path)
    for f in clip()[:3]:
        w.add(f)
    assert sorted(p.name for p in folder.glob("*.png")) == []  # staged beside it until the end
    assert sorted(p.name for p in vf.staging_folder(folder).iterdir()) == ["000000.png", "000001.png", "000002.png"]
    assert w.close() == [f"masks/v/{i:06d}.png" for i in range(3)]
    assert sorted(p.name for p in folder.iterdir()) == ["000000.png", "000001.png", "000002.png"] + (
        ["notes.txt"] if existing else [])
    assert not vf.staging_folder(folder).exists()
    other = tmp_path / "masks" / "w"
    w = vf.TrackPngWriter(other, tmp_path)
    for f in clip()[:3]:
        w.add(f)
    w.abort()  # a video that failed at its fourth frame
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["v"]


@pytest.mark.parametrize("tid", [0, 65536])
def test_track_png_refuses_ids_outside_16_bits(tmp_path, tid):
    with pytest.raises(InvalidArgumentError, match=r"\[1, 65535\]"):
        vf.track_id_image(frame(0, [(tid, (0, 0, 4, 4), 0.5, "car")]))


def test_overlay_mp4_decodes_with_pyav(tmp_path):
    av = pytest.importorskip("av")
    w = vf.OverlayWriter(tmp_path / "overlays" / "v.mp4", tmp_path, fps=10)
    for f in clip():
        w.add(f, pixels(f.frame_index))
    assert w.close() == ["overlays/v.mp4"]
    assert [p.name for p in (tmp_path / "overlays").iterdir()] == ["v.mp4"]  # no temporary file left
    with av.open(str(tmp_path / "overlays" / "v.mp4")) as c:
        stream = c.streams.video[0]
        assert float(stream.average_rate) == pytest.approx(10)
        decoded = [fr.to_ndarray(format="rgb24") for fr in c.decode(stream)]
    assert len(decoded) == 5 and decoded[0].shape == (H, W, 3)
    # Frame 0 has no track: it is the input (up to compression); frame 1 carries the car's colour.
    assert np.abs(decoded[0].astype(int) - pixels(0)).mean() < 6
    colour = np.array(vf.track_colour(1))
    want = (pixels(1)[14:22, 10:18] * 0.5 + colour * 0.5)
    assert np.abs(decoded[1][14:22, 10:18].astype(int) - want).mean() < 12
    assert np.abs(decoded[1][40:46, 40:60].astype(int) - pixels(1)[40:46, 40:60]).mean() < 8


def test_overlay_abort_leaves_nothing(tmp_path):
    pytest.importorskip("av")
    w = vf.OverlayWriter(tmp_path / "overlays" / "v.mp4", tmp_path)
    for f in clip()[:3]:
        w.add(f, pixels(f.frame_index))
    w.abort()
    assert list((tmp_path / "overlays").iterdir()) == []


def test_render_tracks_checks_the_pixels():
    with pytest.raises(InvalidArgumentError, match="48x64x3"):
        vf.render_tracks(np.zeros((10, 10, 3), np.uint8), clip()[1])


def test_track_colours_are_stable_and_distinct():
    colours = [vf.track_colour(i) for i in range(1, 13)]
    assert colours == [vf.track_colour(i) for i in range(1, 13)]
    assert len(set(colours)) == 12


@pytest.mark.parametrize("fmt, cls", [("mot", vf.MotWriter), ("coco", vf.CocoVideoRecord),
                                      ("overlay", vf.OverlayWriter), ("masks", vf.TrackPngWriter)])
def test_open_sinks_by_name(tmp_path, fmt, cls):
    sinks = vf.open_sinks(vf.VideoLayout(tmp_path), "k", "k.mp4", [fmt])
    assert list(sinks) == [fmt] and isinstance(sinks[fmt], cls)


def test_open_sinks_refuses_unknown_format(tmp_path):
    with pytest.raises(InvalidArgumentError, match="expected some of mot, coco, overlay, masks"):
        vf.open_sinks(vf.VideoLayout(tmp_path), "k", "k.mp4", ["yolo"])
