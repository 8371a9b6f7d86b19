"""The final answer of a whole decoded response (several assistant turns and tool observations).

The last assistant turn is cut out (observations may quote `<answer>` from search snippets) and parsed
with the environment's own parser, `hyperseyes_verl.ugs.parser.parse_turn`, so the environment and the
reward never disagree on what the answer was (a defect of the official release).
"""
from __future__ import annotations

from hyperseyes_verl.ugs.parser import parse_turn

_ASSISTANT_OPEN = "<|im_start|>assistant"
_TURN_END = "<|im_end|>"
_OBSERVATION_END = "</tool_response>"


def last_assistant_turn(response_text: str) -> str:
    """Text of the last assistant turn of a response decoded with special tokens kept."""
    text = response_text
    if _ASSISTANT_OPEN in text:
        text = text.rsplit(_ASSISTANT_OPEN, 1)[1]
    elif _OBSERVATION_END in text:  # templates without chat markers: after the last observation
        text = text.rsplit(_OBSERVATION_END, 1)[1]
    return text.split(_TURN_END, 1)[0].strip()


def final_answer(response_text: str) -> str | None:
    """The `<answer>` of the last assistant turn, or None (no parsable answer: its own outcome)."""
    return parse_turn(last_assistant_turn(response_text)).answer
