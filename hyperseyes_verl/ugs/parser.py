"""Tolerant parser of one assistant turn: `<reason>`, EVERY `<tool_call>` block, `<answer>`.

Never raises. Each `<tool_call>` block yields calls (hermes JSON `{"name": ..., "arguments": {...}}`, a list of
such objects, or several objects in a row) or a `ParseError` with a kind, so the environment can show the model
what went wrong and count it. Repairs that are cheap and unambiguous are applied: code fences, trailing commas,
single quotes / Python literals, `arguments` given as a JSON string, an unclosed final tag, and the legacy
`"input": "q1|q2"` string of `text_search` (official release).
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from typing import Any

from hyperseyes_verl.ugs.schema import TEXT_SEARCH

# A block ends at its closing tag, at the next opening tag (an unclosed call followed by another), or at the end.
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|(?=<answer>)|\Z)", re.S)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|(?=<tool_call>)|\Z)", re.S)
_REASON_RE = re.compile(r"<(reason|think)>(.*?)(?:</\1>|(?=<tool_call>)|(?=<answer>)|\Z)", re.S)
_CLOSED_REASON_RE = re.compile(r"<(reason|think)>.*?</\1>", re.S)
# Qwen3 chat templates put `<think>` in the prompt, so the response may start inside the reasoning.
_LEADING_REASON_RE = re.compile(r"\A(.*?)</(reason|think)>", re.S)
_FENCE_RE = re.compile(r"^\s*```[A-Za-z0-9_-]*\s*|\s*```\s*$")
_TRAILING_COMMA_RE = re.compile(r",(\s*[}\]])")
_MAX_LITERAL_EVAL_CHARS = 20_000  # ast repair is for short model-written calls, not pathological inputs


@dataclass
class ToolCall:
    name: str
    arguments: dict[str, Any]
    raw: str  # the block's text, for logs and error lines


# Every kind a ParseError can carry: the turn broke the format (the HDPO format reward reads this set).
PARSE_ERROR_KINDS = frozenset({"bad_json", "not_object", "missing_name", "bad_arguments", "empty_call",
                               "empty_answer", "not_text", "internal"})


@dataclass
class ParseError:
    kind: str  # one of PARSE_ERROR_KINDS
    message: str  # what was wrong and how to write it instead (shown to the model)
    raw: str = ""


@dataclass
class ParsedTurn:
    reason: str | None = None
    calls: list[ToolCall] = field(default_factory=list)
    errors: list[ParseError] = field(default_factory=list)
    answer: str | None = None
    n_tool_blocks: int = 0  # `<tool_call>` blocks seen, parsable or not: the turn attempted tools iff > 0

    @property
    def call_errors(self) -> list[ParseError]:
        """Errors of malformed `<tool_call>` blocks (not answer/format errors)."""
        return [e for e in self.errors if e.kind not in ("empty_answer", "not_text")]


_CALL_FORMAT = '<tool_call>{"name": "text_search", "arguments": {"input": ["query"]}}</tool_call>'


def parse_turn(text: str) -> ParsedTurn:
    """Parse one assistant message. Never raises; anything unusable becomes a `ParseError`."""
    if not isinstance(text, str):
        return ParsedTurn(errors=[ParseError("not_text", f"expected the assistant text as str, got {type(text).__name__}")])
    try:
        return _parse(text)
    except Exception as e:  # a safety net: a parser bug must not crash a rollout; the kind makes it visible
        return ParsedTurn(errors=[ParseError("internal", f"parser failure {type(e).__name__}: {e}", text[:200])])


def _parse(text: str) -> ParsedTurn:
    turn = ParsedTurn()
    turn.reason = _find_reason(text)
    for block in _TOOL_CALL_RE.finditer(text):
        turn.n_tool_blocks += 1
        _parse_block(block.group(1), turn)
    # The answer is looked for outside tool calls and closed reasoning (a reason may mention "<answer>").
    rest = _CLOSED_REASON_RE.sub(" ", _TOOL_CALL_RE.sub(" ", text))
    m = _ANSWER_RE.search(rest)
    if m is not None:
        answer = m.group(1).strip()
        if answer:
            turn.answer = answer
        else:
            turn.errors.append(ParseError("empty_answer", "the <answer></answer> block is empty; put the answer inside it",
                                          m.group(0)[:200]))
    return turn


def _find_reason(text: str) -> str | None:
    m = _REASON_RE.search(text)
    if m is not None:
        return m.group(2).strip()
    m = _LEADING_REASON_RE.search(text)
    if m is not None and "<tool_call>" not in m.group(1) and "<answer>" not in m.group(1):
        return m.group(1).strip()
    return None


def _parse_block(body: str, turn: ParsedTurn) -> None:
    raw = body.strip()
    payload = _FENCE_RE.sub("", raw).strip()
    if not payload:
        turn.errors.append(ParseError("empty_call", f"an empty <tool_call> block; write {_CALL_FORMAT}", raw))
        return
    objects, err = _loads_lenient(payload)
    if err is not None:
        turn.errors.append(ParseError("bad_json", f"the tool call is not valid JSON ({err}); write {_CALL_FORMAT}",
                                      raw[:500]))
        return
    if not objects:
        turn.errors.append(ParseError("empty_call", f"the <tool_call> block holds no call; write {_CALL_FORMAT}", raw))
    for obj in objects:
        call = _to_call(obj, raw, turn)
        if call is not None:
            turn.calls.append(call)


def _loads_lenient(s: str) -> tuple[list[Any], str | None]:
    """JSON value(s) of `s`: one object, a list of objects, or objects in a row; cheap repairs on failure."""
    first_error = None
    for candidate in _repairs(s):
        try:
            return _decode_sequence(candidate), None
        except (ValueError, RecursionError) as e:
            first_error = first_error or str(e)
    if len(s) <= _MAX_LITERAL_EVAL_CHARS:
        try:  # single quotes, True/False/None, trailing commas written Python-style
            value = ast.literal_eval(_TRAILING_COMMA_RE.sub(r"\1", s[_first_bracket(s):]))
            if isinstance(value, (dict, list)):
                return _flatten(value), None
        except Exception:  # literal_eval raises many types (SyntaxError, ValueError, MemoryError, ...)
            pass
    return [], first_error or "no JSON object found"


def _repairs(s: str):
    yield s
    fixed = _TRAILING_COMMA_RE.sub(r"\1", s)
    if fixed != s:
        yield fixed
    closed = _close_brackets(fixed)
    if closed != fixed:  # a call cut off by the end of the message (unclosed final tag)
        yield closed


def _close_brackets(s: str) -> str:
    """Append the closers of brackets left open outside strings; unchanged when the text is not a cut-off."""
    stack: list[str] = []
    in_string = escaped = False
    for ch in s:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif ch in "}]":
            if not stack or stack.pop() != ch:
                return s  # unbalanced the other way: not a simple cut-off
    if in_string or not stack:
        return s
    return s.rstrip().rstrip(",") + "".join(reversed(stack))


def _first_bracket(s: str) -> int:
    idx = [i for i in (s.find("{"), s.find("[")) if i >= 0]
    return min(idx) if idx else 0


def _decode_sequence(s: str) -> list[Any]:
    decoder = json.JSONDecoder()
    i = _first_bracket(s)
    if i >= len(s) or s[i] not in "{[":
        raise ValueError("no JSON object found")
    out: list[Any] = []
    while True:
        value, end = decoder.raw_decode(s, i)
        out.extend(_flatten(value))
        rest = s[end:].lstrip()
        if not rest.startswith(("{", "[")):
            return out  # trailing junk (an extra brace, prose) is ignored
        i = len(s) - len(rest)


def _flatten(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _to_call(obj: Any, raw: str, turn: ParsedTurn) -> ToolCall | None:
    if not isinstance(obj, dict):
        turn.errors.append(ParseError("not_object", f"a tool call must be a JSON object, got {type(obj).__name__}; "
                                                    f"write {_CALL_FORMAT}", raw[:500]))
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        turn.errors.append(ParseError("missing_name", f"the tool call has no \"name\" string (got {name!r}); "
                                                      f"write {_CALL_FORMAT}", raw[:500]))
        return None
    name = name.strip()
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        parsed, err = _loads_lenient(args) if args.strip() else ([{}], None)
        if err is not None or len(parsed) != 1:
            turn.errors.append(ParseError("bad_arguments", f"{name}: \"arguments\" is a string that is not one JSON "
                                                           f"object ({err or 'several values'})", raw[:500]))
            return None
        args = parsed[0]
    if args is None:
        args = {}
    if not isinstance(args, dict):
        turn.errors.append(ParseError("bad_arguments", f"{name}: \"arguments\" must be an object, got "
                                                       f"{type(args).__name__}", raw[:500]))
        return None
    args = dict(args)
    if name == TEXT_SEARCH and isinstance(args.get("input"), str):  # legacy official form "q1|q2"
        args["input"] = [q.strip() for q in args["input"].split("|") if q.strip()]
    return ToolCall(name=name, arguments=args, raw=raw)
