"""Tolerant parser of one assistant turn: `<reason>`, EVERY `<tool_call>` block, `<answer>`.

Never raises. Each `<tool_call>` block yields calls (hermes JSON `{"name": ..., "arguments": {...}}`, a list of
such objects, or several objects in a row) or a `ParseError` with a kind, so the environment can show the model
what went wrong and count it. Repairs that are cheap and unambiguous are applied: code fences, trailing commas,
single quotes / Python literals, `arguments` given as a JSON string, an unclosed final tag, and the legacy
`"input": "q1|q2"` string of `text_search` (official release).

Linear in the input: no regex that can backtrack across the whole message, JSON nesting deeper than
`MAX_JSON_DEPTH` is refused before decoding (no RecursionError), and every decoded string is made UTF-8 safe
(a lone surrogate written as a JSON escape would otherwise break the observation's encoding and tokenization).
"""
from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass, field
from numbers import Real
from typing import Any

from hyperseyes_verl.ugs.images import short_repr
from hyperseyes_verl.ugs.schema import TEXT_SEARCH

# A block ends at its closing tag, at the next opening tag (an unclosed call followed by another), or at the end.
_TOOL_CALL_RE = re.compile(r"<tool_call>(.*?)(?:</tool_call>|(?=<tool_call>)|(?=<answer>)|\Z)", re.S)
_ANSWER_RE = re.compile(r"<answer>(.*?)(?:</answer>|(?=<tool_call>)|\Z)", re.S)
_REASON_RE = re.compile(r"<(reason|think)>(.*?)(?:</\1>|(?=<tool_call>)|(?=<answer>)|\Z)", re.S)
_REASON_OPEN_RE = re.compile(r"<(reason|think)>")
# Qwen3 chat templates put `<think>` in the prompt, so the response may start inside the reasoning.
_LEADING_REASON_RE = re.compile(r"\A(.*?)</(reason|think)>", re.S)
_FENCE_LANG_RE = re.compile(r"```[A-Za-z0-9_-]*")
_SPACE_RE = re.compile(r"\s*")
_TRAILING_COMMA_RE = re.compile(r",(\s*[}\]])")
_MAX_LITERAL_EVAL_CHARS = 20_000  # ast repair is for short model-written calls, not pathological inputs
MAX_JSON_DEPTH = 32  # real calls nest 4 deep; json and ast recurse per level (RecursionError near 1000)


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
# Messages without a variable part are built once: a hostile turn may hold 100k malformed calls.
_EMPTY_BLOCK = f"an empty <tool_call> block; write {_CALL_FORMAT}"
_NO_CALL = f"the <tool_call> block holds no call; write {_CALL_FORMAT}"
_NO_NAME = f"the tool call has no \"name\" string (got None); write {_CALL_FORMAT}"
MAX_VALUES_PER_BLOCK = 256  # JSON values read from one block; the rest is one error (memory stays bounded)


def parse_turn(text: str) -> ParsedTurn:
    """Parse one assistant message. Never raises; anything unusable becomes a `ParseError`."""
    if not isinstance(text, str):
        return ParsedTurn(errors=[ParseError("not_text", f"expected the assistant text as str, got {type(text).__name__}")])
    try:
        return _parse(utf8_safe(text))
    except Exception as e:  # a safety net: a parser bug must not crash a rollout; the kind makes it visible
        return ParsedTurn(errors=[ParseError("internal", f"parser failure {type(e).__name__}: {e}",
                                             utf8_safe(text[:200]))])


def read_area(area: Any) -> tuple[list, str | None]:
    """An image_search call's `area` as its list of boxes ([] = the whole image), read the way the environment
    reads it: a JSON string is decoded with the tool-call guards, one flat [x1, y1, x2, y2] box is wrapped.
    A value that is not a list of boxes gives ([], what is wrong)."""
    raw = area
    if isinstance(area, str):
        area, err = decode_json_value(area)
        if err is not None:
            return [], f'"area" must be a list of boxes, got the string {short_repr(raw, 120)} ({err})'
    if area is None:
        return [], None
    if not isinstance(area, list):
        return [], f'"area" must be a list of [x1, y1, x2, y2] boxes, got {short_repr(area, 120)}'
    if len(area) == 4 and all(isinstance(v, Real) and not isinstance(v, bool) for v in area):
        return [area], None  # one flat box
    return area, None


def utf8_safe(s: str) -> str:
    """`s` with lone surrogates replaced by U+FFFD, so it can be UTF-8 encoded (and tokenized)."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:  # via UTF-16: a valid pair becomes its character, a lone half becomes U+FFFD
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _utf8_safe_value(value: Any) -> Any:
    """Decoded JSON with every string (keys too) made UTF-8 safe; depth is bounded by MAX_JSON_DEPTH."""
    if isinstance(value, str):
        return utf8_safe(value)
    if isinstance(value, dict):
        return {utf8_safe(k) if isinstance(k, str) else k: _utf8_safe_value(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8_safe_value(v) for v in value]
    return value


def decode_json_value(s: str) -> tuple[Any, str | None]:
    """(value, None) for one JSON value, else (None, why). Never raises; strings come back UTF-8 safe."""
    if (depth := _json_depth(s)) > MAX_JSON_DEPTH:
        return None, f"nested {depth} levels deep (at most {MAX_JSON_DEPTH})"
    try:
        return _utf8_safe_value(json.loads(s)), None
    except (ValueError, RecursionError) as e:
        return None, str(e)[:200]


def _parse(text: str) -> ParsedTurn:
    turn = ParsedTurn()
    turn.reason = _find_reason(text)
    for block in _TOOL_CALL_RE.finditer(text):
        turn.n_tool_blocks += 1
        _parse_block(block.group(1), turn)
    # The answer is looked for outside tool calls and closed reasoning (a reason may mention "<answer>").
    rest = _without_closed_reasons(_TOOL_CALL_RE.sub(" ", text))
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


def _without_closed_reasons(text: str) -> str:
    """`text` with every closed `<reason>…</reason>` / `<think>…</think>` replaced by a space, in linear time
    (a regex retries the search for a closing tag from every unclosed opening tag: quadratic)."""
    parts: list[str] = []
    kept_from = pos = 0
    unclosed: set[str] = set()  # no closing tag after some position: none after any later one either
    while (m := _REASON_OPEN_RE.search(text, pos)) is not None:
        name = m.group(1)
        close = -1 if name in unclosed else text.find(f"</{name}>", m.end())
        if close < 0:
            unclosed.add(name)
            pos = m.end()
            continue
        parts.append(text[kept_from:m.start()])
        parts.append(" ")
        kept_from = pos = close + len(name) + 3
    parts.append(text[kept_from:])
    return "".join(parts)


def _strip_fences(s: str) -> str:
    """`s` without a leading ```lang and a trailing ``` fence (plain string ops: a `\s*```$` regex is quadratic
    on long runs of whitespace)."""
    s = s.strip()
    if s.startswith("```"):
        s = s[_FENCE_LANG_RE.match(s).end():]
    if s.endswith("```"):
        s = s[:-3]
    return s.strip()


def _brackets_outside_strings(s: str, state: dict | None = None):
    """The bracket characters of `s` that lie outside JSON strings, in order (one linear pass). `state`, when
    given, tells afterwards whether the text ended inside a string (`state["in_string"]`)."""
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
        elif ch in "{[]}":
            yield ch
    if state is not None:
        state["in_string"] = in_string


def _json_depth(s: str) -> int:
    """Deepest bracket nesting of `s` outside JSON strings (one linear pass; no decoding)."""
    if s.count("{") + s.count("[") <= MAX_JSON_DEPTH:  # the usual short call: no walk needed
        return 0
    depth = deepest = 0
    for ch in _brackets_outside_strings(s):
        if ch in "{[":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(0, depth - 1)
    return deepest


def _parse_block(body: str, turn: ParsedTurn) -> None:
    raw = body.strip()
    payload = _strip_fences(raw)
    if not payload:
        turn.errors.append(ParseError("empty_call", _EMPTY_BLOCK, raw))
        return
    objects, err = _loads_lenient(payload)
    quoted = raw[:500]  # one slice shared by every error of the block (a block may hold 100k objects)
    if err is not None:
        turn.errors.append(ParseError("bad_json", f"the tool call is not valid JSON ({err}); write {_CALL_FORMAT}",
                                      quoted))
        return
    if not objects:
        turn.errors.append(ParseError("empty_call", _NO_CALL, quoted))
    if len(objects) > MAX_VALUES_PER_BLOCK:
        turn.errors.append(ParseError("bad_json", f"more than {MAX_VALUES_PER_BLOCK} JSON values in one <tool_call> "
                                                  f"block; only the first {MAX_VALUES_PER_BLOCK} were read", quoted))
        del objects[MAX_VALUES_PER_BLOCK:]
    for obj in objects:
        call = _to_call(obj, raw, quoted, turn)
        if call is not None:
            turn.calls.append(call)


def _loads_lenient(s: str) -> tuple[list[Any], str | None]:
    """JSON value(s) of `s`: one object, a list of objects, or objects in a row; cheap repairs on failure."""
    if (depth := _json_depth(s)) > MAX_JSON_DEPTH:
        return [], f"nested {depth} levels deep (at most {MAX_JSON_DEPTH})"
    first_error = None
    for candidate in _repairs(s):
        try:
            return _utf8_safe_value(_decode_sequence(candidate)), None
        except (ValueError, RecursionError) as e:
            first_error = first_error or str(e)[:200]
    if len(s) <= _MAX_LITERAL_EVAL_CHARS:
        try:  # single quotes, True/False/None, trailing commas written Python-style
            value = ast.literal_eval(_TRAILING_COMMA_RE.sub(r"\1", s[_first_bracket(s):]))
            if isinstance(value, (dict, list)):
                return _utf8_safe_value(_flatten(value)), None
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
    state: dict = {}
    for ch in _brackets_outside_strings(s, state):
        if ch in "{[":
            stack.append("}" if ch == "{" else "]")
        elif not stack or stack.pop() != ch:
            return s  # unbalanced the other way: not a simple cut-off
    if state.get("in_string") or not stack:
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
        i = _SPACE_RE.match(s, end).end()  # an index, not a copy of the rest: linear in objects in a row
        if i >= len(s) or s[i] not in "{[" or len(out) > MAX_VALUES_PER_BLOCK:
            return out  # trailing junk (an extra brace, prose) is ignored


def _clip(s: str, limit: int = 80) -> str:
    """A name the model wrote, cut for echoing back (a 1 MB tool name must not come back in full)."""
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _flatten(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list) else [value]


def _to_call(obj: Any, raw: str, quoted: str, turn: ParsedTurn) -> ToolCall | None:
    if not isinstance(obj, dict):
        turn.errors.append(ParseError("not_object", f"a tool call must be a JSON object, got {type(obj).__name__}; "
                                                    f"write {_CALL_FORMAT}", quoted))
        return None
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip():
        message = _NO_NAME if name is None else (f"the tool call has no \"name\" string (got {short_repr(name)}); "
                                                 f"write {_CALL_FORMAT}")
        turn.errors.append(ParseError("missing_name", message, quoted))
        return None
    name = name.strip()
    args = obj.get("arguments", obj.get("parameters", {}))
    if isinstance(args, str):
        parsed, err = _loads_lenient(args) if args.strip() else ([{}], None)
        if err is not None or len(parsed) != 1:
            turn.errors.append(ParseError("bad_arguments", f"{_clip(name)}: \"arguments\" is a string that is "
                                                           f"not one JSON object ({err or 'several values'})", quoted))
            return None
        args = parsed[0]
    if args is None:
        args = {}
    if not isinstance(args, dict):
        turn.errors.append(ParseError("bad_arguments", f"{_clip(name)}: \"arguments\" must be an object, got "
                                                       f"{type(args).__name__}", quoted))
        return None
    args = dict(args)
    if name == TEXT_SEARCH and isinstance(args.get("input"), str):  # legacy official form "q1|q2"
        args["input"] = [q.strip() for q in args["input"].split("|") if q.strip()]
    return ToolCall(name=name, arguments=args, raw=raw)
