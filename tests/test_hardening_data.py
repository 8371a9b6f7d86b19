"""Issue 13, smaller items: teacher outputs that cannot be distilled from, orphan snapshot temp files, EXIF
orientation applied once at load, and `index build` on a hostile image (an error line, not a traceback)."""
from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import time
import zlib

import pytest
import torch
from PIL import Image

from hyperseyes_verl.cli import main as hyperseyes
from hyperseyes_verl.opd import TEACHER_OUTPUT_PROBLEMS, check_teacher_outputs, placeholder_teacher_outputs
from hyperseyes_verl.search.embedded import EmbeddedIndex
from hyperseyes_verl.search.image_fingerprint import image_embedding
from hyperseyes_verl.trace import store as trace_store
from hyperseyes_verl.trace.store import ReferenceStore, snapshots
from hyperseyes_verl.utils.images import ImageTooLarge, open_image, upright


# ------------------------------------------------------------------ teacher outputs

def _teacher(seq_len=6, k=4):
    return torch.randint(0, 1000, (seq_len, k), dtype=torch.int32), -torch.rand(seq_len, k) * 5


def test_well_formed_teacher_outputs_pass():
    ids, lp = _teacher()
    assert check_teacher_outputs(ids, lp, 6, 4).ok


@pytest.mark.parametrize("mutate, problem", [
    (lambda ids, lp: (ids[:, :2], lp[:, :2]), "wrong_topk_width"),      # top-2 when the loss wants top-4
    (lambda ids, lp: (ids, lp[:, :3]), "wrong_topk_width"),              # ids and log-probs disagree
    (lambda ids, lp: (ids[:, 0], lp[:, 0]), "wrong_topk_width"),         # 1-D
    (lambda ids, lp: (ids[:5], lp[:5]), "wrong_length"),
    (lambda ids, lp: (ids, lp.index_put((torch.tensor([3]), torch.tensor([1])), torch.tensor(float("nan")))),
     "nonfinite_logprobs"),
    (lambda ids, lp: (ids, lp.index_put((torch.tensor([0]), torch.tensor([0])), torch.tensor(float("inf")))),
     "nonfinite_logprobs"),
    (lambda ids, lp: (ids, torch.zeros(6, 4, dtype=torch.int64)), "nonfinite_logprobs"),
    (lambda ids, lp: (ids.float(), lp), "bad_ids"),
    (lambda ids, lp: (placeholder_teacher_outputs(6, 4)[0], lp), "bad_ids"),  # a sentinel row is not 'scored'
    (lambda ids, lp: (ids.tolist(), lp), "wrong_topk_width"),
])
def test_unusable_teacher_outputs_are_named(mutate, problem):
    check = check_teacher_outputs(*mutate(*_teacher()), 6, 4)
    assert not check.ok and check.problem == problem and check.problem in TEACHER_OUTPUT_PROBLEMS
    assert check.message


def test_nan_message_names_how_many_and_where():
    ids, lp = _teacher()
    lp[2, 3] = float("nan")
    lp[4, 0] = float("nan")
    assert "2 of 24" in check_teacher_outputs(ids, lp, 6, 4).message and "position 2" in check_teacher_outputs(
        ids, lp, 6, 4).message


# ------------------------------------------------------------------ orphan temp files of killed snapshot writes

def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_orphan_snapshot_temp_files_are_removed_on_start(tmp_path):
    store = ReferenceStore()
    store.save(str(tmp_path), 3)
    dead, host = _dead_pid(), trace_store._HOST
    orphans = [tmp_path / f".step_4.{host}-{dead}.abc123.tmp",  # what kill -9 during np.savez leaves
               tmp_path / ".step_5.zz.tmp"]                      # no owner in the name: removed once old
    for p in orphans:
        p.write_bytes(b"half a snapshot")
    old = time.time() - trace_store.ORPHAN_AGE_S - 60
    os.utime(orphans[1], (old, old))
    live = [tmp_path / f".step_6.{host}-{os.getpid()}.x.tmp",   # a writer of this host still running
            tmp_path / f".step_7.otherhost-{dead}.y.tmp",       # another host's writer: not ours to judge
            tmp_path / ".step_8.fresh.tmp"]
    for p in live:
        p.write_bytes(b"being written")
    keep = tmp_path / "notes.tmp"
    keep.write_text("not ours")
    assert ReferenceStore().load(str(tmp_path)) == 3
    assert not any(p.exists() for p in orphans) and all(p.exists() for p in live) and keep.exists()
    assert [s for s, _ in snapshots(str(tmp_path))] == [3]


def test_first_save_also_sweeps_and_names_its_writer(tmp_path):
    (tmp_path / f".step_9.{trace_store._HOST}-{_dead_pid()}.x.tmp").write_bytes(b"")
    ReferenceStore().save(str(tmp_path), 1)
    assert sorted(os.listdir(tmp_path)) == ["step_1.npz"]


# ------------------------------------------------------------------ EXIF orientation, once, at load

def _sideways_jpeg() -> bytes:
    """A 40x20 JPEG (red left half) tagged Orientation=6: viewers show it turned 90° clockwise (20x40, red on top)."""
    img = Image.new("RGB", (40, 20), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    img.save(buf, format="JPEG", exif=exif.tobytes(), quality=95)
    return buf.getvalue()


def test_open_image_applies_exif_orientation_once(tmp_path):
    data = _sideways_jpeg()
    img = open_image(data)
    assert img.size == (20, 40) and img.getpixel((10, 5))[0] > 200  # red on top, as a viewer shows it
    assert upright(img) is img  # the tag is gone: a second pass never turns it again
    path = tmp_path / "photo.jpg"
    path.write_bytes(data)
    assert open_image(path).size == (20, 40)


def test_dataset_and_index_loaders_store_the_upright_image(tmp_path):
    from hyperseyes_verl.data.parquet import png_bytes
    from hyperseyes_verl.verl.sft_dataset import load_image

    (tmp_path / "photo.jpg").write_bytes(_sideways_jpeg())
    stored = Image.open(io.BytesIO(png_bytes(tmp_path / "photo.jpg")))
    assert stored.size == (20, 40)
    assert load_image({"bytes": _sideways_jpeg()}).size == (20, 40)
    rc = hyperseyes(["index", "build", "--images", str(tmp_path), "--out", str(tmp_path / "idx"), "--no-progress"])
    assert rc == 0
    index = EmbeddedIndex(tmp_path / "idx").image
    [(doc, score)] = index.search(open_image(_sideways_jpeg()), 1)
    assert doc.path == "photo.jpg" and score > 0.999  # indexed upright, so the upright query matches exactly
    assert image_embedding(open_image(_sideways_jpeg())).shape == index.features[0].shape


# ------------------------------------------------------------------ index build on a hostile image

def _png_header_bomb(width: int, height: int) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("payload", [_png_header_bomb(100_000, 100_000), _png_header_bomb(9000, 9000),
                                     b"GIF89a" + b"\x00" * 30])
def test_index_build_reports_a_hostile_image_without_a_traceback(tmp_path, capsys, payload):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "imgs" / "fine.png")
    (tmp_path / "imgs" / "bomb.png").write_bytes(payload)
    rc = hyperseyes(["index", "build", "--images", str(tmp_path / "imgs"), "--out", str(tmp_path / "idx"),
                     "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "bomb.png" in err and "Traceback" not in err
    assert not (tmp_path / "idx").exists()  # nothing half-built


def test_pixel_cap_is_checked_before_decoding():
    with pytest.raises(ImageTooLarge, match="9000x9000"):
        open_image(_png_header_bomb(9000, 9000), max_pixels=1_000_000)
