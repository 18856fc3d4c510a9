"""What the tests of ``lang-sam track`` and its server, demo and Ray paths share: the video test
engines of tests/plugin_engines.py (a detector of coloured shapes and a box-fill segmenter that
follows them by colour) registered with checkpoint files, and generated clips written as mp4.

Engines that run the real SAM 2.1 architecture replace them in these tests once a tiny SAM 2.1
config is available (lang_sam.testing); the outputs checked here do not depend on which."""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import numpy as np
import torch

from lang_sam.hub import ModelSpec
from lang_sam.models.registry import register_model, unregister_model
from plugin_engines import BoxFillArch, moving_clip

SAM_TYPE, GDINO_TYPE = "box_fill_video", "color_detector"

# (colour, first frame, last frame, (x, y) at its first frame, (dx, dy) per frame, (w, h)) on 96x128 frames
RED = ("red", 0, 99, (10, 10), (2, 1), (16, 12))
BLUE_LATE = ("blue", 5, 99, (90, 60), (-1, 0), (14, 14))
GREEN = ("green", 0, 99, (60, 20), (-1, 1), (18, 10))

#: Clips of the tests: relative path -> (objects, frames).
CLIPS = {"a.mp4": ([RED, BLUE_LATE], 12), "sub/b.mp4": ([GREEN], 8)}
PROMPT = "red. blue. green"


class VideoEngines:
    """The two test engines registered, with their checkpoint files; :meth:`flags` for the CLI,
    :meth:`kwargs` for :class:`~lang_sam.LangSAM`, :meth:`close` unregisters them."""

    def __init__(self, folder: Path):
        self.sam = register_model(ModelSpec("sam", SAM_TYPE, "bfv.pth", BoxFillArch(),
                                            engine="plugin_engines:BoxFillVideo"), overwrite=True)
        self.det = register_model(ModelSpec("gdino", GDINO_TYPE, "colors.pth", None,
                                            engine="plugin_engines:ColorDetector"), overwrite=True)
        self.sam_ckpt, self.det_ckpt = folder / "bfv.pth", folder / "colors.pth"
        torch.save({"inset": torch.tensor(0)}, self.sam_ckpt)
        torch.save({}, self.det_ckpt)

    def flags(self) -> list[str]:
        return ["--sam-type", SAM_TYPE, "--sam-ckpt", str(self.sam_ckpt), "--gdino-type", GDINO_TYPE,
                "--gdino-ckpt", str(self.det_ckpt), "--device", "cpu"]

    def kwargs(self) -> dict:
        return dict(sam_type=SAM_TYPE, ckpt_path=str(self.sam_ckpt), gdino_type=GDINO_TYPE,
                    gdino_ckpt_path=str(self.det_ckpt), device="cpu")

    def model(self):
        from lang_sam import LangSAM

        return LangSAM(**self.kwargs())

    def close(self) -> None:
        unregister_model("sam", SAM_TYPE)
        unregister_model("gdino", GDINO_TYPE)


def write_clip(path: Path, objects, n: int, fps: float = 10) -> Path:
    """``moving_clip(n, objects)`` as an mp4 (H.264 crf 0: solid colours survive to within a few
    levels, edges within a pixel)."""
    from lang_sam.video_io import VideoWriter

    path.parent.mkdir(parents=True, exist_ok=True)
    with VideoWriter(path, fps=fps, crf=0) as w:
        for frame in moving_clip(n, objects=objects):
            w.write(frame)
    return path


def write_clips(folder: Path, clips: dict = CLIPS) -> Path:
    for rel, (objects, n) in clips.items():
        write_clip(folder / rel, objects, n)
    return folder


def read_mot(path: Path) -> list[tuple[int, int, list[float], float]]:
    """MOT lines as ``(frame, id, [x, y, w, h], score)``, checking the ``-1,-1,-1`` tail."""
    out = []
    for row in csv.reader(path.read_text().splitlines()):
        assert len(row) == 10 and row[7:] == ["-1", "-1", "-1"], row
        out.append((int(row[0]), int(row[1]), [float(v) for v in row[2:6]], float(row[6])))
    return out


def files(root: Path) -> dict[str, bytes]:
    """Every file under ``root`` by relative path, with its bytes."""
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def temp_files(root: Path) -> list[str]:
    return [p.relative_to(root).as_posix() for p in root.rglob("*.tmp")]


def truth_box(obj, i):
    """Where ``moving_clip`` draws ``obj`` on frame ``i`` (xyxy), or None."""
    name, first, last, (x, y), (dx, dy), (w, h) = obj
    if not first <= i <= last:
        return None
    x0, y0 = int(round(x + dx * (i - first))), int(round(y + dy * (i - first)))
    return np.array([x0, y0, x0 + w, y0 + h], float)


@functools.lru_cache(maxsize=4)
def png_bytes(width: int, height: int) -> bytes:
    """A black RGB PNG of ``width x height`` built row by row (a 16000x16000 one is ~750 KB and
    never exists as pixels here: zlib compresses the same zero row again and again)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    z = zlib.compressobj(9)
    row = bytes(1 + 3 * width)  # filter byte 0, then black pixels
    idat = b"".join(z.compress(row) for _ in range(height)) + z.flush()
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", idat) + chunk(b"IEND", b""))


def lying_mov(path: Path, frames: list = [(16000, 16000)], header: tuple[int, int] = (64, 64)) -> Path:
    """A .mov whose stream header says ``header`` (width, height) and whose frames are PNGs of
    the sizes ``frames`` (or raw packet bytes): decoding a 16000x16000 frame costs 768 MB, the
    file is well under 1 MB. PyAV muxes the PNGs' bytes as packets; nothing is encoded."""
    import struct
    from fractions import Fraction

    import av

    with av.open(str(path), "w", format="mov") as c:
        stream = c.add_stream("png", rate=1)
        stream.width, stream.height = 16, 16  # set to ``header`` in the file below (PNG's encoder needs > 0)
        stream.pix_fmt = "rgb24"
        for i, frame in enumerate(frames):
            packet = av.Packet(frame if isinstance(frame, bytes) else png_bytes(*frame))
            packet.stream = stream
            packet.pts = packet.dts = i
            packet.duration = 1
            packet.time_base = Fraction(1, 1)
            c.mux(packet)
    data = bytearray(path.read_bytes())
    at = data.index(b"png ", data.index(b"stsd")) + 28  # the visual sample entry's width, height
    assert struct.unpack(">HH", data[at:at + 4]) == (16, 16)
    data[at:at + 4] = struct.pack(">HH", *header)
    path.write_bytes(bytes(data))
    return path


def cut_clip(src: Path, dst: Path, keep: int) -> Path:
    """``src`` remuxed with its index (``moov``) first, as phones and web encoders write mp4s, then
    cut where frame ``keep``'s bytes begin (an upload or a copy that stopped there): the header
    still announces every frame, the file holds ``keep`` whole ones."""
    import av

    dst.parent.mkdir(parents=True, exist_ok=True)
    whole = dst.with_name(dst.stem + ".whole.mp4")
    with av.open(str(src)) as inp, av.open(str(whole), "w", options={"movflags": "faststart"}) as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                out.mux(packet)
    with av.open(str(whole)) as inp:
        starts = sorted(p.pos for p in inp.demux(inp.streams.video[0]) if p.dts is not None)
    data = whole.read_bytes()
    whole.unlink()
    dst.write_bytes(data[:starts[keep]])
    return dst
