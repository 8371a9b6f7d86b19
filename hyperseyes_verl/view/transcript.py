"""A text trajectory -> turns with their calls, boxes, crops, hits and errors.

Every source keeps the conversation as text (eval `--keep-trajectories`, PRS records, verl's decoded rollouts),
so the structure is recovered the same way for all: each assistant turn through the environment's own parser
(`ugs.parser.parse_turn`), each observation through the line format `ugs.render` writes. Boxes come from the
call arguments at full precision, matched to the observation's crop lines in order (the environment hands out
ids and renders crop lines in request order); the printed, rounded box is the fallback.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from hyperseyes_verl.ugs.images import validate_box
from hyperseyes_verl.ugs.parser import ToolCall, parse_turn, read_area
from hyperseyes_verl.ugs.schema import IMAGE_SEARCH

from .model import Box, CallView, CropView, Hit, ImageRef, QueryView, SearchView, Turn

IMAGE = "<image>"
_SECTION_RE = re.compile(r"^(\S+) #(\d+):$")
_ERROR_RE = re.compile(r"^Error \(([\w-]+)\): (.*)$")
_QUERY_RE = re.compile(r"^Query (.*):$")
_CROP_OK_RE = re.compile(r"^(img_\d+):\s*(.*?)\s*\(crop of (img_\d+), box \[([^\]]*)\]\)$")
_CROP_FAIL_RE = re.compile(r"^(img_\d+): crop failed \(([\w-]+)\): (.*)$")
_WHOLE_RE = re.compile(r"^(img_\d+) \(whole image\):$")
_HIT_RE = re.compile(r"^  (\d+)\. (.*)$")
_RELEVANCE_RE = re.compile(r"^(.*) \(relevance (-?\d+(?:\.\d+)?)\)$")
_MORE_RE = re.compile(r"^     (.*)$")
_FAILED_RE = re.compile(r"^  search failed \(([\w-]+)\): (.*)$")
_URL_RE = re.compile(r"^[a-z][a-z0-9+.-]*://\S+$", re.I)
# `img_k: <image>` lines of the first user turn; verl's decoded prompts drop the placeholder (a special token)
_INPUT_IMAGE_RE = re.compile(r"^img_(\d+):[ \t]*(?:" + re.escape(IMAGE) + r")?[ \t]*$", re.M)
_QUESTION_RE = re.compile(r"^Question: (.*)", re.M | re.S)
# the generation prompt that closes a decoded verl input (`<|im_start|>assistant`, or the bare role word)
_PROMPT_END_RE = re.compile(r"(?:<\|im_end\|>)?\s*(?:<\|im_start\|>)?\s*\bassistant\s*\Z")
_UNUSABLE = "Parts of this turn that could not be used:"
_EXTRA_CALLS_RE = re.compile(r"^tool calls #\d+-#\d+:$")  # calls past max_calls_per_turn, refused together
_MAX_BOXES = 64  # the environment's cap is a config value (8 by default); any larger is reported as an error


@dataclass
class Message:
    """One chat message as text, `<image>` where an image was; `images[k]` holds the k-th one when known."""

    role: str
    text: str
    images: list[ImageRef | None] = field(default_factory=list)


def question_and_inputs(user_text: str) -> tuple[str | None, int]:
    """The question and the number of input images of a first user turn written by `ugs.schema.user_prompt`."""
    m = _QUESTION_RE.search(user_text)
    n = len(_INPUT_IMAGE_RE.findall(user_text))
    question = _PROMPT_END_RE.sub("", m.group(1)).strip() if m else None
    return question, n


def requested_boxes(arguments: dict) -> list[Box | None]:
    """The clamped boxes of an image_search call's `area`, in request order, as the environment reads it."""
    area, _ = read_area(arguments.get("area"))  # the environment's own reading (model output is untrusted)
    # any pixel size works: only the clamping is wanted here, not the too-small check
    return [validate_box(b, 10**6, 10**6, 1)[0] for b in area[:_MAX_BOXES]]


def build_turns(messages: list[Message], input_images: list[ImageRef]) -> list[Turn]:
    """Turns of a trajectory (system and first user message skipped); crops registered as `ImageRef`s."""
    registry: dict[str, ImageRef | None] = {f"img_{k}": ref for k, ref in enumerate(input_images)}
    turns: list[Turn] = []
    calls: list[ToolCall] = []  # the last assistant turn's parsed calls, matched to its observation
    for msg in messages:
        if msg.role == "assistant":
            parsed = parse_turn(msg.text)
            calls = parsed.calls
            turns.append(Turn(index=len(turns) + 1, text=msg.text, reason=parsed.reason, answer=parsed.answer,
                              turn_errors=[(e.kind, e.message) for e in parsed.errors]))
        elif turns and msg.role in ("user", "tool"):
            turn = turns[-1]
            if turn.observation_text is None:
                turn.turn_errors = []  # the observation lists every unusable block itself (and refusals)
            turn.observation_text = (turn.observation_text + "\n" if turn.observation_text else "") + msg.text
            _read_observation(msg, turn, calls, registry)
    return turns


def _read_observation(msg: Message, turn: Turn, calls: list[ToolCall], registry: dict[str, ImageRef | None]) -> None:
    images = list(msg.images)
    call: CallView | None = None
    boxes: list[Box | None] = []
    n_crops = 0
    search: SearchView | None = None
    hit: Hit | None = None
    for line in msg.text.split("\n"):
        if m := _SECTION_RE.match(line):
            k = int(m.group(2)) - 1
            src = calls[k] if 0 <= k < len(calls) and calls[k].name == m.group(1) else None
            call = CallView(name=m.group(1), arguments=dict(src.arguments) if src else {})
            turn.calls.append(call)
            boxes = requested_boxes(call.arguments) if call.name == IMAGE_SEARCH else []
            n_crops, search, hit = 0, None, None
        elif line == _UNUSABLE or _EXTRA_CALLS_RE.match(line):
            call, search, hit = None, None, None
        elif m := _ERROR_RE.match(line):
            (call.errors if call is not None else turn.turn_errors).append((m.group(1), m.group(2)))
            search, hit = None, None
        elif m := _QUERY_RE.match(line):
            q = QueryView(query=_unrepr(m.group(1)))
            _call(turn, call).queries.append(q)
            search, hit = q.search, None
        elif m := _CROP_FAIL_RE.match(line):
            c = _call(turn, call)
            box = boxes[n_crops] if n_crops < len(boxes) else None
            n_crops += 1
            c.crops.append(CropView(image_id=m.group(1), source_id=_str_arg(c.arguments, "image_id"), box=box,
                                    ok=False, error_kind=m.group(2), reason=m.group(3)))
            registry[m.group(1)] = None
            search, hit = None, None
        elif m := _CROP_OK_RE.match(line):
            c = _call(turn, call)
            image_id, shown, source_id = m.group(1), m.group(2), m.group(3)
            box = boxes[n_crops] if n_crops < len(boxes) else _floats(m.group(4))
            n_crops += 1
            stored = images.pop(0) if IMAGE in shown and images else None
            ref = stored or ImageRef(parent=registry.get(source_id) or ImageRef(), box=box)
            registry[image_id] = ref
            crop = CropView(image_id=image_id, source_id=source_id, box=box, ok=True, search=SearchView(), image=ref)
            c.crops.append(crop)
            search, hit = crop.search, None
        elif m := _WHOLE_RE.match(line):
            sv = SearchView()
            _call(turn, call).whole_images.append((m.group(1), sv))
            search, hit = sv, None
        elif search is not None and (m := _HIT_RE.match(line)):
            title, score = m.group(2), None
            if r := _RELEVANCE_RE.match(title):
                title, score = r.group(1), float(r.group(2))
            hit = Hit(title="" if title == "(untitled)" else title, score=score)
            search.hits.append(hit)
        elif hit is not None and (m := _MORE_RE.match(line)):
            value = m.group(1)
            if _URL_RE.match(value) and not hit.url:
                hit.url = value
            elif not hit.snippet and not hit.url:
                hit.snippet = value
        elif search is not None and (m := _FAILED_RE.match(line)):
            search.failure_kind, search.failure_message = m.group(1), m.group(2)
        elif line.startswith("You have "):
            turn.hints.append(line)


def _call(turn: Turn, call: CallView | None) -> CallView:
    """The current call section; a line outside any section (a foreign format) gets an anonymous one."""
    if call is not None:
        return call
    if not turn.calls or turn.calls[-1].name != "?":
        turn.calls.append(CallView(name="?"))
    return turn.calls[-1]


def _unrepr(s: str) -> str:
    try:
        value = ast.literal_eval(s)
        return value if isinstance(value, str) else s
    except (ValueError, SyntaxError):
        return s


def _str_arg(arguments: dict, key: str) -> str | None:
    v = arguments.get(key)
    return v.strip() if isinstance(v, str) else None


def _floats(s: str) -> Box | None:
    try:
        values = tuple(float(v) for v in s.split(","))
    except ValueError:
        return None
    return values if len(values) == 4 else None  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------- verl rollouts
_VISION_RE = re.compile(r"<\|vision_start\|>.*?<\|vision_end\|>", re.S)
_SPECIAL_RE = re.compile(r"<\|(?:im_end|endoftext|image_pad|video_pad)\|>")
_RESPONSE_RUN_RE = re.compile(
    r"(?:\n?user\n)?((?:\s*<tool_response>.*?(?:</tool_response>|\Z))+)\s*(?:assistant\n)?", re.S)
_BARE_TURN_RE = re.compile(r"(?:^|\n)user\n(.*?)(?:\nassistant\n|\Z)", re.S)
_RESPONSE_RE = re.compile(r"<tool_response>\n?(.*?)\n?(?:</tool_response>|\Z)", re.S)


def split_rollout(text: str) -> list[Message]:
    """verl's decoded response (assistant turns with the observations in `<tool_response>` blocks between them)
    as messages. Works with and without special tokens: `<|im_start|>` headers when they were kept, the bare role
    words verl's `skip_special_tokens=True` leaves otherwise."""
    text = _SPECIAL_RE.sub("", _VISION_RE.sub(IMAGE, text))
    if "<|im_start|>" in text:
        out = []
        for i, part in enumerate(text.split("<|im_start|>")):
            if not part.strip():
                continue
            role, _, body = part.partition("\n")
            if i == 0 or role.strip() not in ("assistant", "user", "tool", "system"):
                role, body = "assistant", part  # the response starts inside the first assistant turn
            out.append(Message(role.strip(), _strip_responses(body.strip()) if role.strip() != "assistant"
                               else body.strip()))
        return out
    # tokenizers whose tool tags are special too (the tiny test models) leave only the bare role lines
    runs = _RESPONSE_RUN_RE if "<tool_response>" in text else _BARE_TURN_RE
    out, pos = [], 0
    for m in runs.finditer(text):
        out.append(Message("assistant", text[pos:m.start()].strip()))
        out.append(Message("user", _strip_responses(m.group(1))))
        pos = m.end()
    if text[pos:].strip():
        out.append(Message("assistant", text[pos:].strip()))
    return out


def _strip_responses(body: str) -> str:
    parts = _RESPONSE_RE.findall(body)
    return "\n".join(p.strip("\n") for p in parts) if parts else body
