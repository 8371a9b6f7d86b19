"""Data commands on a user's own gallery (issue 15): the facts schema (what adds up, what only compares), ties,
float facts, and user errors that end in one line instead of a traceback or a silent success."""
from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from hyperseyes_verl.cli import main
from hyperseyes_verl.data.gallery import render_entity_image

TOWERS = [  # name, height (m, floats), year, paint; two towers share the greatest height
    ("Aurora Tower", 312.5, 1889, "red"), ("Beacon Tower", 250.0, 1931, "blue"), ("Citadel Tower", 180.25, 1889, "red"),
    ("Drake Tower", 312.5, 1974, "grey"), ("Ember Tower", 97.75, 2004, "blue"), ("Falcon Tower", 141.0, 1958, "grey"),
]
SCHEMA = """tower:
  plural: towers
  facts:
    height: {type: quantity, unit: m, greater: taller}
    year: {type: number, label: completion year}
    paint: {type: category}
    architect: {type: text}
"""


def user_gallery(root: Path) -> tuple[Path, Path, Path]:
    """A user's folder of tower photos (distinct procedural images), their facts JSONL and a schema."""
    pics = root / "my_photos"
    pics.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7)
    rows = []
    for i, (name, height, year, paint) in enumerate(TOWERS):
        render_entity_image(rng, "landmark").save(pics / f"t{i}.png")
        rows.append({"name": name, "class": "tower", "image": f"t{i}.png", "units": {"height": "m"},
                     "facts": {"height": height, "year": year, "paint": paint, "architect": f"Studio {i}"}})
    (pics / "facts.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (pics / "schema.yaml").write_text(SCHEMA)
    return pics, pics / "facts.jsonl", pics / "schema.yaml"


def _items(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "items.jsonl").read_text().splitlines()]


def test_schema_decides_what_is_summed_and_floats_stay_numeric(tmp_path, capsys):
    pics, facts, schema = user_gallery(tmp_path)
    out = tmp_path / "with_schema"
    assert main(["synth", "--gallery", str(pics), "--facts", str(facts), "--schema", str(schema), "--out", str(out),
                 "--n-visual", "40", "--n-textual", "4", "--max-entities", "4"]) == 0
    items = _items(out)
    sums = [i for i in items if i["program"]["op"] == "sum"]
    assert sums and {i["program"]["fact"] for i in sums} == {"height"}  # never "the total year of all towers"
    assert not any("architect" in json.dumps(i["program"]) for i in items)  # text facts are stated, never asked
    assert any(i["program"].get("fact") == "height" and i["program"]["op"] in ("argmax", "count_gt", "range")
               for i in items)  # a float fact stays numeric
    for i in (i for i in items if i["program"]["op"] == "sum"):
        total = sum(dict((t[0], t[1]) for t in TOWERS)[n] for n in i["entities"])
        assert i["answers"][0] == (str(int(total)) if float(total).is_integer() else str(round(total, 6)))
    doc = next(json.loads(line) for line in (out / "corpus.jsonl").read_text().splitlines()
               if json.loads(line)["title"] == "Citadel Tower")
    assert "The height of Citadel Tower is 180.25 m." in doc["text"] and "Studio 2" in doc["text"]

    out2 = tmp_path / "no_schema"
    assert main(["synth", "--gallery", str(pics), "--facts", str(facts), "--out", str(out2),
                 "--n-visual", "30", "--n-textual", "2", "--max-entities", "4"]) == 0
    assert "no --schema" in capsys.readouterr().err
    assert not [i for i in _items(out2) if i["program"]["op"] == "sum"]  # numbers compare, never add up


def test_tied_answers_are_never_asked(tmp_path):
    pics, facts, schema = user_gallery(tmp_path)
    out = tmp_path / "out"
    assert main(["synth", "--gallery", str(pics), "--facts", str(facts), "--schema", str(schema), "--out", str(out),
                 "--n-visual", "60", "--n-textual", "4", "--max-entities", "5"]) == 0
    facts_by = {t[0]: {"height": t[1], "year": t[2]} for t in TOWERS}
    checked = 0
    for i in _items(out):
        p = i["program"]
        if p["op"] in ("argmax", "argmin", "combine"):
            key = p["by"] if p["op"] == "combine" else p["fact"]
            values = [facts_by[n][key] for n in i["entities"]]
            best = max(values) if p["op"] == "argmax" or p.get("pick") == "max" else min(values)
            assert values.count(best) == 1, (i["question"], i["entities"])
            checked += 1
    assert checked >= 5
    # Aurora and Drake Tower share the greatest height (312.5): "which is tallest" over both must have been avoided
    assert not any(i["program"] == {"op": "argmax", "fact": "height"} and {"Aurora Tower", "Drake Tower"} <= set(i["entities"])
                   for i in _items(out))


@pytest.mark.parametrize("case,expected", [
    ("bad_type", "class 'tower', facts.height.type"),
    ("unknown_fact", "facts ['hieght'] of class 'tower' that no entity gives"),
    ("text_value", "fact 'height' of class 'tower' is a quantity but entity 'Aurora Tower' gives 'tall'"),
    ("missing_image", "image 'nope.png' not found"),
    ("too_many", "made only"),
])
def test_synth_user_errors_are_one_line(tmp_path, capsys, case, expected):
    pics, facts, schema = user_gallery(tmp_path)
    extra = []
    if case == "bad_type":
        schema.write_text(SCHEMA.replace("type: quantity", "type: quantitty"))
    elif case == "unknown_fact":
        schema.write_text(SCHEMA + "    hieght: {type: number}\n")
    elif case == "text_value":
        facts.write_text(facts.read_text().replace('"height": 312.5', '"height": "tall"', 1))
    elif case == "missing_image":
        facts.write_text(facts.read_text().replace('"t0.png"', '"nope.png"'))
    else:
        extra = ["--n-textual", "500"]
    assert main(["synth", "--gallery", str(pics), "--facts", str(facts), "--schema", str(schema),
                 "--out", str(tmp_path / "out"), "--n-visual", "2", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and expected in err and "Traceback" not in err


def test_to_parquet_refuses_a_missing_or_foreign_prs_folder(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synth", "--out", str(out), "--n-visual", "2", "--n-textual", "1", "--per-class", "3"]) == 0
    capsys.readouterr()
    rl = ["to-parquet", "rl", "--items", str(out / "items.jsonl"), "--out", str(tmp_path / "rl.parquet")]
    assert main([*rl, "--prs", str(tmp_path / "no_such_prs")]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err and not (tmp_path / "rl.parquet").exists()
    (tmp_path / "other_prs").mkdir()
    (tmp_path / "other_prs" / "results.jsonl").write_text('{"id": "x-1", "status": "unsolved", "attempts": []}\n')
    assert main([*rl, "--prs", str(tmp_path / "other_prs")]) == 2
    assert "none of the 3 items has a PRS result" in capsys.readouterr().err
    assert main(["to-parquet", "sft", "--prs", str(tmp_path / "no_such_prs"), "--out", str(tmp_path / "s.parquet")]) == 2
    assert "has no results.jsonl" in capsys.readouterr().err
    assert main(["to-parquet", "sft", "--prs", str(tmp_path / "other_prs"), "--out", str(tmp_path / "s.parquet")]) == 2
    assert "no rows to write" in capsys.readouterr().err


def test_to_parquet_convert_errors_are_one_line(tmp_path, capsys):
    import pandas as pd

    pd.DataFrame({"query": ["q"], "gt": ["a"]}).to_parquet(tmp_path / "b.parquet")
    assert main(["to-parquet", "convert", "--input", str(tmp_path / "b.parquet"), "--out", str(tmp_path / "o.parquet"),
                 "--question-col", "query", "--answer-col", "gt"]) == 2
    err = capsys.readouterr().err
    assert "columns ['image'] not found" in err and "--image-col" in err
    assert main(["to-parquet", "convert", "--input", str(tmp_path / "missing.parquet"),
                 "--out", str(tmp_path / "o.parquet")]) == 2
    assert "missing.parquet" in capsys.readouterr().err


def test_index_info_says_when_a_query_has_no_hits(tmp_path, capsys):
    out = tmp_path / "syn"
    assert main(["synth", "--out", str(out), "--n-visual", "1", "--n-textual", "0", "--per-class", "2"]) == 0
    assert main(["index", "build", "--corpus", str(out / "corpus.jsonl"), "--out", str(out / "index"),
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["index", "info", str(out / "index"), "--query", "zzzqqq xylophone"]) == 0
    assert "no hits for 'zzzqqq xylophone' among 10 documents" in capsys.readouterr().out


def test_version_flag():
    done = subprocess.run([sys.executable, "-m", "hyperseyes_verl.cli", "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("hyperseyes ") and "verl 0.9.1" in done.stdout
