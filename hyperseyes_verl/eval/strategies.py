"""Scripted search strategies: reference points for the efficiency metrics, NOT a trained model.

Each strategy writes real assistant turns in the UGS format and is executed for real by the search
environment against the index. What a strategy may read: the question, the item's recorded entity boxes
(standing in for a model's visual grounding), the question's `program` (its structure, e.g. "argmax of
height" — standing in for reading the question; never its answer) and the observations it actually got.
Entity names come only from the reverse-image-search hits it saw, facts only from the text hits it saw,
and the answer is computed from those facts; a missed entity or fact makes the answer wrong, as it would
for a model.

Strategies (the model name picks one):
- `serial`:      one search per round (one crop, then one query per entity) — "search longer".
- `parallel`:    every crop in one round, every lookup in the next, then answer — "search wider".
- `oversearch`:  parallel, plus whole-image search, query variants and a re-verification round.
- `guess`:       answers at once, without tools.

`ScriptedClient` has the `chat()` of `hyperseyes_verl.utils.openai_chat.OpenAIChatClient`, so the shared
episode runner drives it exactly like a served model (also usable as the PRS "teacher" in the demo).
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from hyperseyes_verl.episode.runner import content_text, estimate_tokens
from hyperseyes_verl.data.gallery import DEMO_CLASSES, EntityClass
from hyperseyes_verl.data.questions import evaluate, satisfies
from hyperseyes_verl.utils.openai_chat import ChatReply, image_data_url

STRATEGIES = ("serial", "parallel", "oversearch", "guess")
NOTICE = ("These are SCRIPTED strategies executed for real against the embedded index (boxes from the synthetic "
          "items, entity names and facts only from the search results they got), not a trained model.")

_QUESTION_RE = re.compile(r"Question: (.*)", re.S)
_CROP_RE = re.compile(r"img_\d+: <image> \(crop of img_\d+, box \[([^\]]*)\]\)\n(?:  1\. (.+?)(?: \(relevance [\d.]+\))?\n)?")
_CALL_RE = re.compile(r"<tool_call>(.*?)</tool_call>", re.S)
_NO_ROUNDS = "no tool rounds left"


@dataclass(frozen=True)
class ItemSpec:
    """What a scripted strategy is allowed to know about one item besides its observations."""

    cls: str  # entity class (the item's domain)
    program: dict[str, Any]
    boxes: list[list[float]] = field(default_factory=list)


def spec_key(question: str, image_url: str | None = None) -> str:
    """Key of an item's spec: its question, plus a hash of its first image (as the data URL the model receives)
    when several items share one question text (one template over different mosaics of a one-class gallery)."""
    q = question.strip()
    return q if image_url is None else q + "\x00" + hashlib.sha1(image_url.encode()).hexdigest()


def specs_from_items(items: Iterable[Any]) -> dict[str, ItemSpec]:
    """spec_key -> spec, from `EvalItem`s of the synthetic benchmark (meta holds program and boxes)."""
    with_program = [it for it in items if it.meta.get("program")]
    shared = {q for q, n in Counter(it.question.strip() for it in with_program).items() if n > 1}
    out = {}
    for it in with_program:
        program = it.meta["program"]
        spec = ItemSpec(cls=program.get("class") or it.domain, program=program, boxes=list(it.meta.get("boxes") or []))
        q = it.question.strip()
        if q in shared:  # told apart by their image: the boxes of another mosaic would crop the wrong entities
            url = image_data_url(it.load_images()[0]) if it.image_refs else ""
            out[spec_key(q, url)] = spec
        else:
            out[spec_key(q)] = spec
    return out


def _first_image_url(content: Any) -> str:
    """The data URL of the first image of a user message, in wire form (image_url) or environment form (PIL)."""
    for b in content if isinstance(content, list) else []:
        if b.get("type") == "image_url":
            return b["image_url"]["url"]
        if b.get("type") == "image" and b.get("image") is not None:
            return image_data_url(b["image"])
    return ""


def _call(name: str, arguments: dict[str, Any]) -> str:
    return "<tool_call>" + json.dumps({"name": name, "arguments": arguments}) + "</tool_call>"


def _near(a: list[float], b: list[float]) -> bool:
    return len(a) == 4 and len(b) == 4 and all(abs(x - y) < 2e-3 for x, y in zip(a, b))


@dataclass
class _State:
    """What the transcript so far says: boxes searched, names seen per box, queries sent, facts read."""

    searched_boxes: list[list[float]] = field(default_factory=list)
    names_by_box: list[tuple[list[float], str]] = field(default_factory=list)
    queries: list[str] = field(default_factory=list)
    observations: str = ""
    rounds_exhausted: bool = False
    tool_turns: int = 0


def _read_state(messages: list[dict[str, Any]]) -> _State:
    st = _State()
    for m in messages[2:]:
        text = content_text(m["content"])
        if m["role"] == "assistant":
            calls = _CALL_RE.findall(text)
            st.tool_turns += bool(calls)
            for raw in calls:
                try:
                    call = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                args = call.get("arguments", {})
                st.searched_boxes += [list(map(float, b)) for b in args.get("area", []) or []]
                st.queries += list(args.get("input", []) or [])
        else:
            st.observations += text + "\n"
            st.rounds_exhausted = _NO_ROUNDS in text
            for box_txt, title in _CROP_RE.findall(text):
                if title:
                    st.names_by_box.append(([float(v) for v in box_txt.split(",")], title.strip()))
    return st


class ScriptedPolicy:
    """One strategy's next assistant turn as a function of the transcript (stateless, so it is safe under
    concurrent episodes and gives the same turn for the same transcript)."""

    def __init__(self, strategy: str, specs: Mapping[str, ItemSpec],
                 classes: Mapping[str, EntityClass] | None = None):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown scripted strategy {strategy!r}; choose one of {list(STRATEGIES)}")
        self.strategy = strategy
        self.specs = dict(specs)
        self.classes = dict(classes) if classes is not None else {c.name: c for c in DEMO_CLASSES}

    # ---------------------------------------------------------------------------------------- reading
    def _spec(self, messages: list[dict[str, Any]]) -> ItemSpec | None:
        m = _QUESTION_RE.search(content_text(messages[1]["content"])) if len(messages) > 1 else None
        if not m:
            return None
        q = m.group(1).strip()
        return self.specs.get(q) or self.specs.get(spec_key(q, _first_image_url(messages[1]["content"])))

    def _facts(self, cls: EntityClass, names: Iterable[str], keys: Iterable[str], obs: str) -> dict[str, dict]:
        """Facts read from observation text with the corpus sentence patterns; only what was seen."""
        flat = re.sub(r"\s+", " ", obs)
        out: dict[str, dict] = {}
        for name in names:
            got = {}
            for key in keys:
                spec = cls.fact(key)
                m = spec.pattern(name).search(flat)
                if m:
                    got[key] = spec.parse(m.group(1))
            out[name] = got
        return out

    # ---------------------------------------------------------------------------------------- acting
    def next_turn(self, messages: list[dict[str, Any]]) -> str:
        spec = self._spec(messages)
        if spec is None or spec.cls not in self.classes:
            return "<reason>This question is outside what the scripted strategy knows.</reason><answer>unknown</answer>"
        if self.strategy == "guess":
            return self._guess(spec)
        st = _read_state(messages)
        if spec.program.get("op") == "constraints":
            return self._textual(spec, st)
        return self._visual(spec, st)

    def _guess(self, spec: ItemSpec) -> str:
        op = spec.program.get("op")
        guess = "2" if op in ("count_gt", "count_eq") else "unknown"
        return f"<reason>Answering from the picture alone, without searching.</reason><answer>{guess}</answer>"

    def _answer(self, value: Any, why: str) -> str:
        return f"<reason>{why}</reason><answer>{value}</answer>"

    def _visual(self, spec: ItemSpec, st: _State) -> str:
        cls, prog = self.classes[spec.cls], spec.program
        keys = sorted({prog["fact"], prog.get("by", prog["fact"])})
        label = cls.fact(prog.get("by", prog["fact"])).label
        unsearched = [b for b in spec.boxes if not any(_near(b, s) for s in st.searched_boxes)]
        names = list(dict.fromkeys(n for _, n in st.names_by_box))
        facts = self._facts(cls, names, keys, st.observations)
        missing = [n for n in names if any(k not in facts[n] for k in keys) and f"{n} {label}" not in st.queries]
        over = self.strategy == "oversearch"

        if not st.rounds_exhausted:
            if unsearched:
                if self.strategy == "serial":
                    return (f"<reason>Identify the entities one at a time: searching box {len(st.searched_boxes) + 1}."
                            f"</reason>" + _call("image_search", {"image_id": "img_0", "area": [unsearched[0]]}))
                calls = [_call("image_search", {"image_id": "img_0", "area": unsearched})]
                if over:
                    calls.insert(0, _call("image_search", {"image_id": "img_0"}))
                return (f"<reason>Identify all {len(unsearched)} entities at once.</reason>" + "".join(calls))
            if missing:
                if self.strategy == "serial":
                    return (f"<reason>Look up {missing[0]}.</reason>"
                            + _call("text_search", {"input": [f"{missing[0]} {label}"]}))
                queries = [f"{n} {label}" for n in missing]
                if over:
                    queries += [f"{n}" for n in missing] + [f"{n} {cls.name} facts" for n in missing]
                return "<reason>Look up every identified entity in parallel.</reason>" + _call(
                    "text_search", {"input": queries})
            if over and not any(q.startswith("verify ") for q in st.queries) and names:
                return ("<reason>Verify the facts once more before answering.</reason>"
                        + _call("text_search", {"input": [f"verify {n} {label}" for n in names]})
                        + _call("image_search", {"image_id": "img_0", "area": list(spec.boxes)}))
        known = {n: f for n, f in facts.items() if all(k in f for k in keys)}
        if not known:
            return self._answer("unknown", "No entity could be identified with its facts.")
        boxes = {}
        for box, name in st.names_by_box:
            boxes.setdefault(name, box)
        try:
            value = evaluate(prog, known, boxes)
        except (ValueError, KeyError):
            return self._answer("unknown", "The facts found do not determine an answer.")
        return self._answer(value, f"Computed from the facts found for {len(known)} entities.")

    def _textual(self, spec: ItemSpec, st: _State) -> str:
        cls, cons = self.classes[spec.cls], spec.program["constraints"]
        queries = []
        for c in cons:
            # Phrase the query like the sentence that states the fact; the value only for an equality.
            f = cls.fact(c["fact"])
            value = c["value"] if c["cmp"] == "=" else ""
            q = f.sentence.format(name="", value=value, unit=f" {f.unit}" if f.unit else "", label=f.label)
            queries.append(re.sub(r"\s+", " ", q).strip(" ."))
        keys = [c["fact"] for c in cons]
        hit_titles = re.findall(r"^  \d+\. (.+?)(?: \(relevance [\d.]+\))?$", st.observations, re.M)
        candidates = list(dict.fromkeys(t.strip() for t in hit_titles))
        facts = self._facts(cls, candidates, keys, st.observations)
        todo_q = [q for q in queries if q not in st.queries]
        lookups = [f"{n} {cls.name}" for n in candidates if any(k not in facts[n] for k in keys)
                   and f"{n} {cls.name}" not in st.queries]
        if not st.rounds_exhausted:
            pending = todo_q or lookups
            if pending:
                batch = pending[:1] if self.strategy == "serial" else pending
                if self.strategy == "oversearch":
                    batch = batch + [f"{q} list" for q in batch]
                return "<reason>Search the constraints.</reason>" + _call("text_search", {"input": batch})

        def ok(name: str) -> int:
            got = facts.get(name, {})
            return sum(k in got and satisfies(got[k], c) for k, c in zip(keys, cons))

        best = max(candidates, key=ok, default=None)
        if best is None or ok(best) < len(cons):
            return self._answer(best or "unknown", "No candidate found that meets every constraint.")
        return self._answer(best, "The only candidate found meeting every constraint.")


class ScriptedClient:
    """`chat(model, messages)` like `OpenAIChatClient`; `model` = `scripted-<strategy>` or `<strategy>`."""

    def __init__(self, specs: Mapping[str, ItemSpec], classes: Mapping[str, EntityClass] | None = None):
        self.policies = {s: ScriptedPolicy(s, specs, classes) for s in STRATEGIES}
        self.calls = 0

    async def chat(self, model: str, messages: list[dict[str, Any]], **sampling: Any) -> ChatReply:
        strategy = model.removeprefix("scripted-")
        if strategy not in self.policies:
            raise ValueError(f"unknown scripted model {model!r}; use scripted-<{'|'.join(STRATEGIES)}>")
        self.calls += 1
        text = self.policies[strategy].next_turn(messages)
        # Token counts are estimated from characters (~4 per token): there is no tokenizer behind a script.
        return ChatReply(text=text, finish_reason="stop", completion_tokens=estimate_tokens(text))

    async def aclose(self) -> None:
        return None
