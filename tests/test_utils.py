import json

import pytest

from hyperseyes_verl.utils.jsonl import AppendOnlyJsonl, read_jsonl


def test_read_jsonl_names_the_bad_line(tmp_path):
    p = tmp_path / "items.jsonl"
    p.write_text('{"id": "a", "q": 1}\n\n{"id": "b"}\n')
    assert [r["id"] for r in read_jsonl(p)] == ["a", "b"]
    with pytest.raises(ValueError, match=r"items.jsonl:3: item lacks \['q'\]"):
        read_jsonl(p, required=("id", "q"), what="item")
    p.write_text('{"id": "a"}\n[1, 2]\n')
    with pytest.raises(ValueError, match=r":2: a record must be a JSON object, got list"):
        read_jsonl(p)
    p.write_text('{"id": "a"}\n{"id": \n')
    with pytest.raises(ValueError, match=r":2: not JSON"):
        read_jsonl(p)


def test_append_only_log_survives_a_cut_line(tmp_path):
    log = AppendOnlyJsonl(tmp_path / "run" / "results.jsonl")
    assert list(log.records()) == []
    log.append({"id": "a", "ok": True})
    with log.path.open("a") as f:  # a kill in the middle of the second write
        f.write('{"id": "b", "o')
    assert [r["id"] for r in log.records()] == ["a"]  # the cut record is skipped (and will be redone)
    log.append(json.dumps({"id": "b", "ok": False}))
    log.append({"id": "c", "ok": True})
    assert [r["id"] for r in log.records()] == ["a", "b", "c"]
    assert log.path.read_text().count("\n") == 4  # the cut line was closed, not glued to "b"


def test_config_sections_name_the_section_and_the_bad_field():
    from hyperseyes_verl.hdpo import HDPOConfig
    from hyperseyes_verl.opd import OPDConfig

    assert OPDConfig.from_mapping(None) == OPDConfig()
    assert HDPOConfig.from_mapping({"w_tool": 0.3}).w_tool == 0.3
    with pytest.raises(ValueError, match=r"invalid hyperseyes.opd config .*bogus"):
        OPDConfig.from_mapping({"bogus": 1})
    with pytest.raises(ValueError, match=r"invalid hyperseyes.hdpo config .*w_tool"):
        HDPOConfig.from_mapping({"w_tool": "lots"})
    with pytest.raises(ValueError, match=r"(?s)invalid hyperseyes.hdpo config \[1\]: .*valid dictionary"):
        HDPOConfig.from_mapping([1])  # a section that is not a mapping at all
