"""Scripted strategies act on what they observed: names from image hits, facts from text hits."""
from __future__ import annotations

from hyperseyes_verl.eval.strategies import ItemSpec, ScriptedPolicy

Q = "Which of the landmarks in the image has the highest height? Answer with its name."
BOXES = [[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]
SPECS = {Q: ItemSpec(cls="landmark", program={"op": "argmax", "fact": "height"}, boxes=BOXES)}


def _start():
    return [{"role": "system", "content": "sys"}, {"role": "user", "content": f"img_0: <image>\nQuestion: {Q}"}]


def _crops_obs(names):
    lines = ["image_search #1:"]
    for i, (box, name) in enumerate(zip(BOXES, names), 1):
        lines.append(f"img_{i}: <image> (crop of img_0, box [{', '.join(f'{v:.3f}' for v in box)}])")
        lines.append(f"  1. {name} (relevance 0.95)")
    return {"role": "user", "content": "\n".join(lines) + "\n"}


def test_parallel_searches_wide_then_answers_from_observed_facts():
    p = ScriptedPolicy("parallel", SPECS)
    msgs = _start()
    t1 = p.next_turn(msgs)
    assert '"area": [[0.0, 0.0, 0.5, 1.0], [0.5, 0.0, 1.0, 1.0]]' in t1
    msgs += [{"role": "assistant", "content": t1}, _crops_obs(["Kalo Spire", "Vimer Spire"])]
    t2 = p.next_turn(msgs)
    assert '"input": ["Kalo Spire height", "Vimer Spire height"]' in t2
    # the observed facts decide, whatever the "truth" might be
    obs = ("Query 'Kalo Spire height':\n  1. Kalo Spire (relevance 0.9)\n     Kalo Spire rises 120 metres above the "
           "ground.\nQuery 'Vimer Spire height':\n  1. Vimer Spire (relevance 0.9)\n     Vimer Spire rises 95 metres "
           "above the ground.\n")
    msgs += [{"role": "assistant", "content": t2}, {"role": "user", "content": obs}]
    assert p.next_turn(msgs).endswith("<answer>Kalo Spire</answer>")
    obs2 = obs.replace("120", "80")
    assert p.next_turn(msgs[:-1] + [{"role": "user", "content": obs2}]).endswith("<answer>Vimer Spire</answer>")


def test_serial_one_search_per_round_and_answers_when_budget_is_spent():
    p = ScriptedPolicy("serial", SPECS)
    msgs = _start()
    t1 = p.next_turn(msgs)
    assert '"area": [[0.0, 0.0, 0.5, 1.0]]' in t1
    spent = {"role": "user", "content": _crops_obs(["Kalo Spire"])["content"] +
             "You have no tool rounds left: answer now with <answer>...</answer>."}
    t2 = p.next_turn(msgs + [{"role": "assistant", "content": t1}, spent])
    assert "<tool_call>" not in t2 and "<answer>unknown</answer>" in t2  # no facts seen, no invented answer


def test_guess_uses_no_tools_and_unknown_questions_are_not_faked():
    assert "<tool_call>" not in ScriptedPolicy("guess", SPECS).next_turn(_start())
    other = [{"role": "system", "content": "s"}, {"role": "user", "content": "Question: something else?"}]
    assert ScriptedPolicy("parallel", SPECS).next_turn(other).endswith("<answer>unknown</answer>")
