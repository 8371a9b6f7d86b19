"""Tolerant turn parser and tool schemas: every branch, the official quirks, all calls of a turn, and a fuzz."""
from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hyperseyes_verl.ugs.parser import parse_turn
from hyperseyes_verl.ugs.schema import TOOL_SCHEMAS, system_prompt, user_prompt
from hyperseyes_verl.ugs.types import UGSConfig


def block(name: str, **arguments) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


# ------------------------------------------------------------------ well-formed turns

def test_every_tool_call_of_a_turn_is_parsed_in_order():
    text = ("<reason>two entities</reason>\n" + block("image_search", image_id="img_0", area=[[0, 0, 0.5, 1]])
            + "\n" + block("text_search", input=["a", "b"]) + "\n" + block("text_search", input=["c"]))
    turn = parse_turn(text)
    assert turn.reason == "two entities"
    assert [c.name for c in turn.calls] == ["image_search", "text_search", "text_search"]
    assert turn.calls[0].arguments == {"image_id": "img_0", "area": [[0, 0, 0.5, 1]]}
    assert turn.calls[2].arguments == {"input": ["c"]}
    assert turn.errors == [] and turn.answer is None and turn.n_tool_blocks == 3


def test_answer_turn():
    turn = parse_turn("<reason>known</reason>\n<answer> Paris </answer>")
    assert turn.answer == "Paris" and turn.calls == [] and turn.n_tool_blocks == 0


def test_think_tag_and_leading_close_tag_give_the_reason():
    assert parse_turn("<think>hmm</think><answer>x</answer>").reason == "hmm"
    # Qwen3 templates open <think> in the prompt: the response starts inside the reasoning.
    assert parse_turn("still thinking</think>\n<answer>x</answer>").reason == "still thinking"
    assert parse_turn("<answer>x</answer>").reason is None


def test_unclosed_reason_stops_at_the_tool_call():
    turn = parse_turn("<reason>cut " + block("text_search", input=["q"]))
    assert turn.reason == "cut" and len(turn.calls) == 1


def test_unclosed_final_tool_call_and_answer():
    turn = parse_turn(block("text_search", input=["a"]) + '<tool_call>{"name": "text_search", "arguments": {"input": ["b"]}}')
    assert [c.arguments["input"] for c in turn.calls] == [["a"], ["b"]]
    assert parse_turn("<reason>r</reason><answer>Mount Fuji").answer == "Mount Fuji"


def test_unclosed_tool_call_followed_by_another_block():
    text = '<tool_call>{"name": "text_search", "arguments": {"input": ["a"]}}\n' + block("text_search", input=["b"])
    assert [c.arguments["input"] for c in parse_turn(text).calls] == [["a"], ["b"]]


def test_cut_off_call_is_closed():
    turn = parse_turn('<tool_call>{"name": "image_search", "arguments": {"image_id": "img_0", "area": [[0, 0, 1, 1],')
    assert turn.errors == []
    assert turn.calls[0].arguments == {"image_id": "img_0", "area": [[0, 0, 1, 1]]}


def test_arguments_as_json_string():
    raw = json.dumps({"name": "text_search", "arguments": json.dumps({"input": ["x", "y"]})})
    assert parse_turn(f"<tool_call>{raw}</tool_call>").calls[0].arguments == {"input": ["x", "y"]}


def test_code_fence_trailing_commas_and_single_quotes():
    text = "<tool_call>\n```json\n{'name': 'text_search', 'arguments': {'input': ['a', 'b',],},}\n```\n</tool_call>"
    turn = parse_turn(text)
    assert turn.errors == [] and turn.calls[0].arguments == {"input": ["a", "b"]}
    text = '<tool_call>{"name": "text_search", "arguments": {"input": ["a",]},}</tool_call>'
    assert parse_turn(text).calls[0].arguments == {"input": ["a"]}


def test_python_literals_are_repaired():
    text = "<tool_call>{'name': 'image_search', 'arguments': {'image_id': 'img_0', 'area': None}}</tool_call>"
    assert parse_turn(text).calls[0].arguments == {"image_id": "img_0", "area": None}


def test_legacy_pipe_separated_input():
    turn = parse_turn(block("text_search", input="q1 | q2||q3 "))
    assert turn.calls[0].arguments["input"] == ["q1", "q2", "q3"]
    # Only text_search's input is split; other strings are left to the environment's checks.
    assert parse_turn(block("image_search", image_id="a|b")).calls[0].arguments["image_id"] == "a|b"


def test_list_of_calls_and_objects_in_a_row_in_one_block():
    two = [{"name": "text_search", "arguments": {"input": ["a"]}}, {"name": "text_search", "arguments": {"input": ["b"]}}]
    assert len(parse_turn(f"<tool_call>{json.dumps(two)}</tool_call>").calls) == 2
    row = json.dumps(two[0]) + "\n" + json.dumps(two[1])
    assert len(parse_turn(f"<tool_call>{row}</tool_call>").calls) == 2


def test_trailing_junk_after_the_object_is_ignored():
    turn = parse_turn('<tool_call>{"name": "text_search", "arguments": {"input": ["a"]}}} thanks</tool_call>')
    assert turn.errors == [] and turn.calls[0].name == "text_search"


def test_parameters_alias_and_missing_arguments():
    assert parse_turn('<tool_call>{"name": "text_search", "parameters": {"input": ["a"]}}</tool_call>').calls[0].arguments == {"input": ["a"]}
    assert parse_turn('<tool_call>{"name": "image_search"}</tool_call>').calls[0].arguments == {}


# ------------------------------------------------------------------ errors: one kind per malformed call

def kinds(text: str) -> list[str]:
    return [e.kind for e in parse_turn(text).errors]


def test_bad_json():
    turn = parse_turn('<tool_call>{"name": text_search}</tool_call>')
    assert [e.kind for e in turn.errors] == ["bad_json"] and turn.calls == []
    assert "<tool_call>" in turn.errors[0].message  # tells the model the expected format
    assert turn.errors[0].raw == '{"name": text_search}'


def test_missing_name_not_object_empty_call():
    assert kinds('<tool_call>{"arguments": {"input": ["a"]}}</tool_call>') == ["missing_name"]
    assert kinds('<tool_call>{"name": 3, "arguments": {}}</tool_call>') == ["missing_name"]
    assert kinds('<tool_call>{"name": "  ", "arguments": {}}</tool_call>') == ["missing_name"]
    assert kinds("<tool_call>[1, 2]</tool_call>") == ["not_object", "not_object"]
    assert kinds("<tool_call>  </tool_call>") == ["empty_call"]
    assert kinds("<tool_call>[]</tool_call>") == ["empty_call"]


def test_bad_arguments():
    assert kinds('<tool_call>{"name": "text_search", "arguments": [1]}</tool_call>') == ["bad_arguments"]
    assert kinds('<tool_call>{"name": "text_search", "arguments": "not json"}</tool_call>') == ["bad_arguments"]
    assert kinds('<tool_call>{"name": "text_search", "arguments": "{} {}"}</tool_call>') == ["bad_arguments"]


def test_good_calls_survive_a_bad_neighbour():
    text = block("text_search", input=["a"]) + "<tool_call>{oops</tool_call>" + block("text_search", input=["b"])
    turn = parse_turn(text)
    assert [c.arguments["input"] for c in turn.calls] == [["a"], ["b"]]
    assert [e.kind for e in turn.errors] == ["bad_json"] and turn.n_tool_blocks == 3


def test_empty_answer_is_an_error_not_an_answer():
    turn = parse_turn("<answer>  </answer>")
    assert turn.answer is None and [e.kind for e in turn.errors] == ["empty_answer"]
    assert turn.call_errors == []


def test_answer_mentioned_inside_closed_reason_is_not_an_answer():
    turn = parse_turn("<reason>I will write <answer>x</answer> later</reason>" + block("text_search", input=["q"]))
    assert turn.answer is None and len(turn.calls) == 1


def test_answer_and_tool_call_in_one_turn_are_both_reported():
    turn = parse_turn(block("text_search", input=["q"]) + "<answer>Rome</answer>")
    assert turn.answer == "Rome" and len(turn.calls) == 1


def test_non_text_and_plain_text():
    assert kinds(None) == ["not_text"]  # type: ignore[arg-type]
    turn = parse_turn("I think the answer is Paris.")
    assert turn.calls == [] and turn.answer is None and turn.errors == [] and turn.n_tool_blocks == 0


# ------------------------------------------------------------------ schema and prompts

def test_tool_schemas_are_openai_functions_with_real_array_items():
    by_name = {s["function"]["name"]: s["function"] for s in TOOL_SCHEMAS}
    assert set(by_name) == {"image_search", "text_search"} and all(s["type"] == "function" for s in TOOL_SCHEMAS)
    area = by_name["image_search"]["parameters"]["properties"]["area"]
    assert area["type"] == "array" and area["minItems"] == 1
    box = area["items"]
    assert box["type"] == "array" and box["minItems"] == box["maxItems"] == 4
    assert box["items"] == {"type": "number", "minimum": 0, "maximum": 1}
    assert by_name["image_search"]["parameters"]["required"] == ["image_id"]
    queries = by_name["text_search"]["parameters"]["properties"]["input"]
    assert queries["items"]["type"] == "string" and queries["minItems"] == 1
    for fn in by_name.values():
        assert fn["description"] and all(p["description"] for p in fn["parameters"]["properties"].values())
    json.dumps(TOOL_SCHEMAS)  # serialisable as sent to an endpoint


def test_system_prompt_states_format_parallelism_ids_and_budgets():
    text = system_prompt(UGSConfig(max_tool_rounds=5, max_turns=6, max_boxes_per_call=7, top_k=2))
    for needle in ("<reason>", "<tool_call>", "<answer>", "parallel", "img_0", "img_1", "[0, 1]",
                   "at most 5 turns with tool calls", "6 turns in all", "7 boxes", "at most 2 results"):
        assert needle in text, needle
    # The example calls inside the prompt parse as valid calls.
    assert [c.name for c in parse_turn(text).calls] == ["image_search", "text_search"]


def test_user_prompt():
    assert user_prompt("Who?", n_images=2) == "img_0: <image>\nimg_1: <image>\nQuestion: Who?"


# ------------------------------------------------------------------ fuzz: never raises, valid calls survive

FRAGMENTS = ["<tool_call>", "</tool_call>", "<answer>", "</answer>", "<reason>", "</reason>", "<think>", "</think>",
             "{", "}", "[", "]", '"', "'", ",", ":", "\\", "|", "```", "name", "arguments", "text_search",
             "image_search", "input", "area", "NaN", "1e999", "null", "True", "\n"]
fuzz_text = st.one_of(st.text(max_size=300),
                      st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)), max_size=60).map("".join))

query = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), min_size=1, max_size=20)
valid_call = st.one_of(
    st.builds(lambda qs: ("text_search", {"input": qs}), st.lists(query, min_size=1, max_size=4)),
    st.builds(lambda i, boxes: ("image_search", {"image_id": f"img_{i}", "area": boxes}), st.integers(0, 9),
              st.lists(st.lists(st.floats(0, 1), min_size=4, max_size=4), min_size=1, max_size=3)),
)
junk = st.text(alphabet=st.characters(blacklist_characters="<"), max_size=12)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(fuzz_text)
def test_fuzz_arbitrary_text_never_raises(text):
    turn = parse_turn(text)
    assert "internal" not in {e.kind for e in turn.errors}
    assert len(turn.calls) + len(turn.call_errors) >= 1 or turn.n_tool_blocks == 0
    for call in turn.calls:
        assert isinstance(call.name, str) and call.name and isinstance(call.arguments, dict)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(valid_call, min_size=2, max_size=5), st.data())
def test_fuzz_mutated_turn_keeps_the_untouched_calls(calls, data):
    bodies = [json.dumps({"name": n, "arguments": a}) for n, a in calls]
    victim = data.draw(st.integers(0, len(bodies) - 1))
    body = bodies[victim]
    cut = data.draw(st.integers(0, len(body)))
    span = data.draw(st.integers(0, 10))
    bodies[victim] = body[:cut] + data.draw(junk) + body[cut + span:]
    close_victim = data.draw(st.booleans())  # an unclosed block must not swallow its neighbours
    text = "<reason>r</reason>" + "".join(
        f"<tool_call>{b}" + ("</tool_call>" if i != victim or close_victim else "") + "\n"
        for i, b in enumerate(bodies))
    turn = parse_turn(text)
    parsed = [(c.name, c.arguments) for c in turn.calls]
    for i, (name, args) in enumerate(calls):
        if i != victim:
            assert (name, args) in parsed
    assert turn.n_tool_blocks == len(calls)


def test_every_error_kind_is_declared_for_the_format_reward():
    from hyperseyes_verl.ugs.parser import PARSE_ERROR_KINDS

    turns = ["<tool_call>{bad</tool_call>", "<tool_call>[1]</tool_call>", '<tool_call>{"arguments": {}}</tool_call>',
             '<tool_call>{"name": "text_search", "arguments": 3}</tool_call>', "<tool_call></tool_call>",
             "<answer></answer>", 42]
    kinds = {e.kind for t in turns for e in parse_turn(t).errors}
    assert kinds <= PARSE_ERROR_KINDS and len(kinds) >= 6, kinds
