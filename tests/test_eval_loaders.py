"""Benchmark loaders: every released shape maps to the same item; unknown shapes fail with the columns found."""
from __future__ import annotations

import io
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from hyperseyes_verl.eval.loaders import BenchmarkFormatError, detect_shape, load_benchmark


def _png(color=(200, 10, 10), size=(12, 8)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, color).save(buf, format="PNG")
    return buf.getvalue()


def _parquet(path, rows):
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def test_imeb_parquet(tmp_path):
    p = _parquet(tmp_path / "imeb.parquet", [
        {"question": "Which is tallest?", "images": [{"bytes": _png()}], "answer": "Kalo Spire",
         "entity_count": 4, "domain": "landmark"}])
    [it] = load_benchmark(p)
    assert it.benchmark == "imeb" and it.id == "imeb/0"
    assert it.answers == ["Kalo Spire"] and it.entity_count == 4 and it.domain == "landmark"
    [img] = it.load_images()
    assert img.size == (12, 8) and img.getpixel((0, 0)) == (200, 10, 10)


def test_mmsearch_end2end(tmp_path):
    p = _parquet(tmp_path / "end2end.parquet", [
        {"sample_id": "s7", "query": "Who designed this?", "query_image": {"bytes": _png(), "path": None},
         "gt_answer": "Zaha Hadid", "alternative_gt_answers": ["Hadid"], "area": "architecture", "subfield": "x"}])
    [it] = load_benchmark(p)
    assert it.id == "mmsearch/s7" and it.answers == ["Zaha Hadid", "Hadid"] and it.domain == "architecture"
    assert len(it.load_images()) == 1


def test_mmsearch_plus_multi_image(tmp_path):
    p = _parquet(tmp_path / "mmsp.parquet", [
        {"question": "q?", "answer": ["a1", "a2"], "num_images": 2, "img_1": {"bytes": _png()},
         "img_2": {"bytes": _png((0, 0, 255))}, "img_3": None, "category": "Sports"}])
    [it] = load_benchmark(p)
    assert it.benchmark == "mmsearch_plus" and it.answers == ["a1", "a2"] and it.domain == "Sports"
    imgs = it.load_images()
    assert [im.getpixel((0, 0)) for im in imgs] == [(200, 10, 10), (0, 0, 255)]


def test_fvqa_rl_style(tmp_path):
    p = _parquet(tmp_path / "fvqa_test.parquet", [
        {"data_id": "f1", "prompt": [{"role": "user", "content": "<image>What bird is this?"}],
         "images": [{"bytes": _png()}], "reward_model": {"ground_truth": "robin", "style": "rule"},
         "category": "animal"}])
    [it] = load_benchmark(p)
    assert it.benchmark == "fvqa" and it.question == "What bird is this?" and it.answers == ["robin"]


def test_livevqa_and_browsecomp_vl_with_relative_image_paths(tmp_path):
    (tmp_path / "imgs").mkdir()
    Image.new("RGB", (5, 5), (1, 2, 3)).save(tmp_path / "imgs" / "a.png")
    lv = tmp_path / "livevqa.jsonl"
    lv.write_text(json.dumps({"id": 3, "question": "When?", "Ground_Truth": "2024", "Ground_Truth_List": ["2024"],
                              "img_path": "imgs/a.png", "topic": "sports"}) + "\n")
    [it] = load_benchmark(lv)
    assert it.benchmark == "livevqa" and it.id == "livevqa/3" and it.answers == ["2024"] and it.domain == "sports"
    assert it.load_images()[0].getpixel((0, 0)) == (1, 2, 3)
    bc = tmp_path / "bc_vl_level1.jsonl"
    bc.write_text(json.dumps({"prompt": "Which city?", "file_path": "/elsewhere/a.png", "answer": "Oslo",
                              "level": "level1"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match="does not exist"):
        load_benchmark(bc)
    bc.write_text(json.dumps({"prompt": "Which city?", "file_path": "imgs/a.png", "answer": "Oslo",
                              "level": "level1"}) + "\n")
    [it] = load_benchmark(bc)
    assert it.benchmark == "browsecomp_vl" and it.answers == ["Oslo"] and it.domain == "level1"


def test_our_rl_parquet_keeps_entity_count_and_meta(tmp_path):
    p = _parquet(tmp_path / "test.parquet", [
        {"data_source": "hyperseyes_synth", "prompt": [{"role": "user", "content": "<image>Which is fastest?"}],
         "images": [{"bytes": _png()}], "reward_model": {"style": "rule", "ground_truth": "Ulvi Coupe"},
         "agent_name": "hyperseyes_agent",
         "extra_info": {"index": 5, "split": "test", "question": "Which is fastest?", "answers": ["Ulvi Coupe"],
                        "ref_rounds": 1, "ref_searches": 3, "entity_count": 3, "domain": "car"}}])
    [it] = load_benchmark(p)
    assert it.id == "hyperseyes_synth/test/5" and it.entity_count == 3 and it.domain == "car"
    assert it.meta["ref_rounds"] == 1


def test_unknown_shape_names_the_columns_found(tmp_path):
    p = tmp_path / "odd.jsonl"
    p.write_text(json.dumps({"q": "x", "gold": "y", "pic": "z"}) + "\n")
    with pytest.raises(BenchmarkFormatError) as e:
        load_benchmark(p)
    msg = str(e.value)
    assert "['gold', 'pic', 'q']" in msg and "--columns" in msg


def test_explicit_column_mapping(tmp_path):
    p = _parquet(tmp_path / "odd.parquet", [{"q": "x?", "gold": ["y"], "pic": {"bytes": _png()}, "cat": "c1"}])
    [it] = load_benchmark(p, columns="question=q,answer=gold,images=pic,domain=cat", name="mine")
    assert it.id == "mine/0" and it.answers == ["y"] and it.domain == "c1" and len(it.image_refs) == 1
    with pytest.raises(BenchmarkFormatError, match="FIELD=COLUMN"):
        load_benchmark(p, columns="question=q,gold")


def test_remote_images_and_missing_answers_are_refused(tmp_path):
    p = tmp_path / "imeb.jsonl"
    p.write_text(json.dumps({"question": "q", "answer": "a", "image": "https://x.org/a.png"}) + "\n")
    with pytest.raises(BenchmarkFormatError, match="remote URL"):
        load_benchmark(p)
    p.write_text(json.dumps({"question": "q", "answer": "", "images": []}) + "\n")
    with pytest.raises(BenchmarkFormatError, match="no reference answer"):
        load_benchmark(p)


def test_detect_shape_prefers_specific_shapes():
    assert detect_shape({"prompt", "reward_model", "extra_info", "images"}) == "rl"
    assert detect_shape({"prompt", "reward_model", "images", "data_id"}) == "fvqa"
    assert detect_shape({"question", "answer", "img_1", "img_2"}) == "mmsearch_plus"
    assert detect_shape({"question", "answer", "image"}) == "imeb"


def test_plain_prompt_starting_with_a_bracket_keeps_its_text(tmp_path):
    p = tmp_path / "bc.jsonl"
    p.write_text(json.dumps({"prompt": "[Photo] Who built this tower?", "answer": "Ann", "image": None}) + "\n")
    [it] = load_benchmark(p, fmt="browsecomp_vl")
    assert it.question == "[Photo] Who built this tower?" and it.answers == ["Ann"] and it.image_refs == []
