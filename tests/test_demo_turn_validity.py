"""`make demo`'s turn-validity breakdown on hand-written trajectories."""
from __future__ import annotations

from types import SimpleNamespace

from hyperseyes_verl.demo.format_probe import turn_validity

CALL = '<reason>r</reason><tool_call>{"name": "text_search", "arguments": {"input": ["a"]}}</tool_call>'
BAD_JSON = '<reason>r</reason><tool_call>{"name": "arguments": "arguments"}</tool_call>'


def episode(*assistant: str):
    msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
    for text in assistant:
        msgs += [{"role": "assistant", "content": text}, {"role": "tool", "content": "no results"}]
    return SimpleNamespace(trajectory=msgs)


def test_turns_are_counted_overall_and_by_index():
    v = turn_validity([episode(CALL, BAD_JSON, "<answer>3</answer>"), episode(CALL, "just text"),
                       SimpleNamespace(trajectory=None)])
    assert (v["turns"], v["attempted"], v["valid"]) == (5, 4, 3)
    assert v["by_turn"] == [[2, 2], [0, 2], [1, 1]]
    assert v["valid_share"] == 0.6 and v["attempt_share"] == 0.8


def test_no_turns_gives_no_share():
    assert turn_validity([episode()]) == {"turns": 0, "attempted": 0, "valid": 0, "attempt_share": None,
                                           "valid_share": None, "by_turn": []}


def test_validity_table_lists_each_model_with_its_turns():
    from hyperseyes_verl.demo.train import validity_table

    rows = validity_table({"sft": turn_validity([episode(CALL, BAD_JSON)]), "rl": turn_validity([episode(CALL)])})
    assert rows[2] == "| sft | 2 | 2 | 1 | 0.5 | 1/1, 0/1 |" and rows[3] == "| rl | 1 | 1 | 1 | 1.0 | 1/1 |"
