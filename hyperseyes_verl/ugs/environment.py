"""The Unified Grounded Search environment: one episode of the HyperEyes agent (the pure core).

`step(assistant_text)` parses EVERY tool call of the turn, crops every requested box, runs every search of
every call concurrently (one `asyncio.gather`, one `search_timeout_s` per search) and returns the observation
and the round's statistics. It never raises on model output or backend faults: each problem becomes an
error line for the model and a counted kind.

Turn semantics:
- `<answer>` ends the episode; tool calls in that turn are not executed (`answer_with_tool_call`).
- a turn with neither answer nor `<tool_call>` ends it (`no_action`).
- a turn with `<tool_call>` blocks is a tool round, also when every block is malformed (the model spent the
  turn on tools). The last of `max_turns` turns is kept for the answer: tool calls there, or after
  `max_tool_rounds` rounds, are refused (`round_budget`); at `max_turns` the episode ends (`turn_budget`).
- all calls of a turn are dispatched together, so a crop made in a turn is usable as `image_id` only from
  the next turn on.
- the observation holds one tool message per parsed call, in order (error lines included; calls beyond
  `max_calls_per_turn` share one message), then one for the blocks that could not be parsed (the first
  `MAX_ERROR_LINES` shown, the rest summarized); the budget hint and the re-stated question close the last message.
- cost is linear in the message: text the model wrote is echoed back clipped, and a long message is parsed
  in a worker thread so the event loop (other rollouts' searches) keeps running.
"""
from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

from PIL import Image

from hyperseyes_verl.search.base import FailureKind, Hit, SearchBackend, SearchFailure
from hyperseyes_verl.ugs import official_format, render
from hyperseyes_verl.ugs.images import (
    UNREADABLE_SOURCE,
    CropResult,
    ImageRegistry,
    in_other_units,
    short_repr,
    units_reason,
)
from hyperseyes_verl.ugs.parser import ParsedTurn, ToolCall, parse_turn, read_area
from hyperseyes_verl.ugs.render import ContentBuilder, SearchOutcome
from hyperseyes_verl.ugs.schema import IMAGE_SEARCH, TEXT_SEARCH, TOOL_NAMES
from hyperseyes_verl.ugs.types import EpisodeStats, FinishReason, Observation, RoundStats, StepResult, UGSConfig
from hyperseyes_verl.utils.images import TokenFit

# Plan items of one call, rendered after the searches return:
# ("error", kind, message) | ("query", query, job) | ("crop", CropResult, job | None) | ("whole", image_id, job)
_Item = tuple[str, Any, Any]
MAX_ERROR_LINES = 16  # unusable blocks listed one by one; the rest are summarized by kind (bounded observation)
_THREAD_PARSE_CHARS = 16_384  # messages longer than this are parsed off the event loop


class SearchEnvironment:
    """One episode. Create a new environment per episode; `stats` accumulates over its turns."""

    def __init__(self, backend: SearchBackend, question: str, images: list[Image.Image],
                 config: UGSConfig = UGSConfig(), image_fit: TokenFit | None = None):
        """`image_fit`: the model's image-token rule; crops are then cut at the size the model sees."""
        if not isinstance(question, str):
            raise TypeError(f"question must be a str, got {type(question).__name__}")
        self.backend = backend
        self.question = question
        self.config = config
        self.registry = ImageRegistry(list(images), config, image_fit)
        self.stats = EpisodeStats()
        self._turn_first_id = self.registry.n_assigned  # first id handed out in the current turn

    @property
    def done(self) -> bool:
        return self.stats.finish_reason != "running"

    @property
    def tool_rounds_left(self) -> int:
        """Tool rounds the model may still use; the last turn is kept for the answer."""
        cfg, st = self.config, self.stats
        return max(0, min(cfg.max_tool_rounds - st.tool_rounds, cfg.max_turns - st.turns - 1))

    async def step(self, assistant_text: str) -> StepResult:
        if self.done:
            raise RuntimeError(f"the episode already finished ({self.stats.finish_reason}); "
                               "create a new SearchEnvironment for the next episode")
        may_call = self.tool_rounds_left > 0
        self.stats.turns += 1
        if isinstance(assistant_text, str) and len(assistant_text) > _THREAD_PARSE_CHARS:
            turn = await asyncio.to_thread(parse_turn, assistant_text)
        else:
            turn = parse_turn(assistant_text)

        if turn.answer is not None or turn.n_tool_blocks == 0:
            self.stats.errors.update(e.kind for e in turn.errors)
            if turn.answer is None:
                return self._finish("no_action")
            n_calls = len(turn.calls) + len(turn.call_errors)
            if n_calls:
                self.stats.errors["answer_with_tool_call"] += n_calls
            return self._finish("answer", turn.answer)

        if not may_call:
            return self._refuse(turn)
        round_stats, observation = await self._run_round(turn)
        return StepResult(done=False, finish_reason="running", observation=observation, round=round_stats)

    # ------------------------------------------------------------------ turn outcomes

    def _finish(self, reason: FinishReason, answer: str | None = None) -> StepResult:
        st = self.stats
        st.finish_reason = reason
        if answer is not None:
            st.answered, st.answer = True, answer
        if reason == "turn_budget":
            st.budget_exhausted = True
        return StepResult(done=True, finish_reason=reason, answer=answer)

    def _refuse(self, turn: ParsedTurn) -> StepResult:
        """Tool calls with no tool round left: not executed; the model is told to answer."""
        st = self.stats
        st.errors.update(e.kind for e in turn.errors)
        n_calls = max(1, len(turn.calls) + len(turn.call_errors))
        st.errors["round_budget"] += n_calls
        st.budget_exhausted = True
        if st.turns >= self.config.max_turns:
            return self._finish("turn_budget")
        why = render.ROUND_BUDGET_REFUSAL.format(n_calls)
        if self.config.observation_format == "official":
            text = official_format.observation_text([official_format.error_content(why)],
                                                    self.question.replace("<image>", "").strip(), 0,
                                                    self.config.hint_when_rounds_left)
            return StepResult(done=False, finish_reason="running",
                              observation=Observation([official_format.observation_message([], text)]))
        b = ContentBuilder()
        render.render_error(b, "round_budget", why)
        self._close(b, rounds_left=0)
        return StepResult(done=False, finish_reason="running", observation=Observation([b.message()]))

    def _close(self, b: ContentBuilder, rounds_left: int) -> None:
        hint = render.budget_hint(rounds_left, self.config)
        if hint:
            b.text("\n" + hint)
        if self.config.restate_question:
            b.text("\n" + render.question_line(self.question))
        b.flush()

    # ------------------------------------------------------------------ one tool round

    async def _run_round(self, turn: ParsedTurn) -> tuple[RoundStats, Observation]:
        t0 = time.perf_counter()
        cfg = self.config
        rs = RoundStats(round_index=self.stats.tool_rounds + 1)
        usable = set(self.registry.ids)  # snapshot: crops of this turn are not usable within it
        self._turn_first_id = self.registry.n_assigned
        # ("text", query) | ("crop", CropResult) | ("whole", image_id): one search each (a crop that fails
        # while being cut sends none)
        jobs: list[tuple[str, Any]] = []
        plans: list[tuple[ToolCall, list[_Item]]] = []
        for call in turn.calls[: cfg.max_calls_per_turn]:
            items: list[_Item] = []
            n_jobs = len(jobs)
            try:
                if call.name == IMAGE_SEARCH:
                    rs.tool_calls += self._plan_image(call, usable, items, jobs)
                elif call.name == TEXT_SEARCH:
                    rs.tool_calls += self._plan_text(call, items, jobs)
                else:
                    items.append(("error", "unknown_tool", f"unknown tool {_short(call.name)}; the tools are "
                                                           f"{', '.join(sorted(TOOL_NAMES))}"))
            except Exception as e:  # a planning bug must not end the rollout: the call becomes a counted line
                del jobs[n_jobs:]
                items = [("error", "internal", f"the call could not be run ({type(e).__name__}: {_short(str(e))})")]
            plans.append((call, items))

        outcomes = await asyncio.gather(*(self._run_job(kind, payload) for kind, payload in jobs))

        messages = [self._render_call(i, call, items, outcomes, rs) for i, (call, items) in enumerate(plans)]
        if (n_extra := len(turn.calls) - cfg.max_calls_per_turn) > 0:
            rs.errors["too_many_calls"] += n_extra
            b = ContentBuilder().text(f"tool calls #{cfg.max_calls_per_turn + 1}-#{len(turn.calls)}:\n")
            render.render_error(b, "too_many_calls", f"{n_extra} call(s) not executed: at most {cfg.max_calls_per_turn} "
                                                      "tool calls run per turn; put more boxes or queries into one call")
            messages.append(b.message())
        if turn.errors:
            b = ContentBuilder().text("Parts of this turn that could not be used:\n")
            rs.errors.update(e.kind for e in turn.errors)
            for e in turn.errors[:MAX_ERROR_LINES]:
                render.render_error(b, e.kind, e.message)
            if len(turn.errors) > MAX_ERROR_LINES:
                b.text(_more_errors_line(Counter(e.kind for e in turn.errors[MAX_ERROR_LINES:])))
            messages.append(b.message())

        rs.searches = sum(1 for outcome in outcomes if outcome is not None)
        rs.text_queries = sum(1 for kind, _ in jobs if kind == "text")
        for outcome in outcomes:
            if outcome is not None and outcome.failed:
                rs.search_failures += 1
                rs.search_failure_kinds[outcome.failure_kind] += 1
            elif outcome is not None and not outcome.hits:
                rs.searches_empty += 1
        self._accumulate(rs)
        rs.rounds_left = self.tool_rounds_left
        if rs.rounds_left == 0:  # every tool round is spent: the answer must come without more search
            self.stats.budget_exhausted = True
        if cfg.observation_format == "official":
            messages = [self._official_message(turn, plans, outcomes, rs.rounds_left)]
        else:
            self._close(ContentBuilder(messages[-1]["content"]), rs.rounds_left)
        rs.wall_s = time.perf_counter() - t0
        return rs, Observation(messages)

    def _official_message(self, turn: ParsedTurn, plans: list[tuple[ToolCall, list[_Item]]],
                          outcomes: list[SearchOutcome | None], rounds_left: int) -> dict[str, Any]:
        """The round in the release's text (`official_format`); statistics were counted by `_render_call`."""
        cfg = self.config
        contents: list[str] = []
        images: list[Image.Image] = []
        bare = False  # the release's exception path: `Error: ...` alone, no wrapper, question or hint

        def hits(job: int | None) -> list[Hit]:
            outcome = outcomes[job] if job is not None else None
            return [] if outcome is None or outcome.failed else outcome.hits  # an outage reads as no results

        for call, items in plans:
            errors = [(a, msg) for kind, a, msg in items if kind == "error"]
            extra = [official_format.error_content(msg) for kind, msg in errors
                     if kind not in ("unknown_image_id", "empty_query", "bad_query", "bad_arguments")]
            if call.name == IMAGE_SEARCH:
                image_id = call.arguments.get("image_id", "img_0")
                crops = [(a, hits(job) if a.ok else None) for kind, a, job in items if kind == "crop"]
                whole = [(a, job) for kind, a, job in items if kind == "whole"]
                if not isinstance(image_id, str):
                    content, bare = official_format.error_content(
                        f"{type(image_id).__name__!r} object has no attribute 'strip'"), True
                elif any(k == "unknown_image_id" for k, _ in errors) or (not image_id.strip() and not crops):
                    content = official_format.unknown_image_content(image_id.strip())
                elif whole:
                    content = official_format.whole_image_content(whole[0][0], hits(whole[0][1]))
                elif crops:
                    content = official_format.crops_content([(c.image_id, h) for c, h in crops])
                    images.extend(c.image for c, h in crops if h is not None)
                else:  # arguments the release would have raised on (e.g. `area` not a list)
                    content = "\n".join(official_format.error_content(m) for _, m in errors)
                    extra = []
            elif call.name == TEXT_SEARCH:
                content = official_format.text_search_content(
                    [(q, hits(job)) for kind, q, job in items if kind == "query"])
            else:
                content, extra = official_format.error_content(f"Unknown tool name: {call.name}"), []
                bare = True
            contents.append("\n".join([content, *extra]))
        n_extra = len(turn.calls) - cfg.max_calls_per_turn
        if n_extra > 0:
            contents.append(official_format.error_content(f"{n_extra} call(s) not executed: at most "
                                                          f"{cfg.max_calls_per_turn} tool calls run per turn"))
        contents += [official_format.error_content(e.message) for e in turn.errors[:MAX_ERROR_LINES]]
        if bare and len(contents) == 1:
            return official_format.observation_message([], contents[0])
        # the release re-states its metadata question with `<image>` placeholders removed, stripped
        question = self.question.replace("<image>", "").strip()
        text = official_format.observation_text(contents, question, rounds_left, cfg.hint_when_rounds_left)
        return official_format.observation_message(images, text)

    def _accumulate(self, rs: RoundStats) -> None:
        st = self.stats
        st.tool_rounds += 1
        st.tool_calls += rs.tool_calls
        st.searches += rs.searches
        st.searches_per_round.append(rs.searches)
        st.searches_empty += rs.searches_empty
        st.crops_ok += rs.crops_ok
        st.crops_failed += rs.crops_failed
        st.search_failures += rs.search_failures
        st.errors.update(rs.errors)
        st.search_failure_kinds.update(rs.search_failure_kinds)

    def _plan_text(self, call: ToolCall, items: list[_Item], jobs: list) -> bool:
        cfg = self.config
        queries = call.arguments.get("input")  # the parser already split a legacy "q1|q2" string
        if not isinstance(queries, list) or not queries:
            items.append(("error", "bad_arguments", 'text_search needs "input": a non-empty list of query strings, '
                                                    f"got {_short(call.arguments)}"))
            return False
        accepted = 0
        for query in queries:
            if not isinstance(query, str):
                items.append(("error", "bad_query", f"a query must be a string, got {_short(query)}"))
                continue
            query = query.strip()
            if not query:
                items.append(("error", "empty_query", "an empty query was skipped"))
            elif len(query) > cfg.max_query_chars:
                items.append(("error", "query_too_long", f"query {_short(query)} has {len(query)} characters; "
                                                         f"the limit is {cfg.max_query_chars}"))
            elif accepted >= cfg.max_queries_per_call:
                items.append(("error", "too_many_queries", f"query {_short(query)} not run: at most "
                                                           f"{cfg.max_queries_per_call} queries per text_search"))
            else:
                accepted += 1
                items.append(("query", query, len(jobs)))
                jobs.append(("text", query))
        return True

    def _plan_image(self, call: ToolCall, usable: set[str], items: list[_Item], jobs: list) -> bool:
        cfg = self.config
        args = call.arguments
        # the release reads a missing image_id as the input image
        image_id = args.get("image_id", "img_0" if cfg.observation_format == "official" else None)
        if not isinstance(image_id, str) or not image_id.strip():
            items.append(("error", "bad_arguments", 'image_search needs "image_id" (a string such as "img_0"), '
                                                    f"got {_short(args)}"))
            return False
        image_id = image_id.strip()
        if image_id not in usable:
            if self._turn_first_id <= _id_number(image_id) < self.registry.n_assigned:
                why = (f"{image_id} was created in this same turn; all calls of a turn run together, so use it "
                       "from the next turn on")
            elif image_id in self.registry.known_ids:
                try:
                    self.registry.get(image_id)
                    why = f"{image_id} is not usable"
                except KeyError as e:
                    why = e.args[0]
            else:
                why = f"unknown image id {_short(image_id)}; known ids: {', '.join(self.registry.ids) or 'none'}"
            items.append(("error", "unknown_image_id", why))
            return False
        area, err = read_area(args.get("area"))
        if err is not None:
            items.append(("error", "bad_arguments", err))
            return False
        if not area:
            items.append(("whole", image_id, len(jobs)))
            jobs.append(("whole", image_id))
            return True
        # One box in pixels / 0-1000 means the call was written in those units: its boxes that happen to be <= 1
        # are not fractions either (the first would crop the whole image and pass), so all of them are refused.
        units = next((b for b in area[:cfg.max_boxes_per_call] if in_other_units(b)), None)
        for j, box in enumerate(area):
            if j >= cfg.max_boxes_per_call:
                items.append(("error", "too_many_boxes", f"box {_short(box)} not cropped: at most "
                                                         f"{cfg.max_boxes_per_call} boxes per image_search"))
                continue
            if units is not None:
                size = self.registry.get(image_id).size
                why = units_reason(units, *size) + ("" if box is units else "; this call's other boxes are read "
                                                    "in the same units")
                crop = self.registry.reject(image_id, box, "bad_box_units", why)
            else:
                crop = self.registry.plan_crop(image_id, box)
            if crop.error_kind is None:
                items.append(("crop", crop, len(jobs)))
                jobs.append(("crop", crop))
            else:
                items.append(("crop", crop, None))
        return True

    def _render_call(self, i: int, call: ToolCall, items: list[_Item], outcomes: list[SearchOutcome],
                     rs: RoundStats) -> dict[str, Any]:
        b = ContentBuilder().text(f"{render.clip(call.name, 80)} #{i + 1}:\n")
        shown = 0
        unshown: Counter = Counter()  # error lines past MAX_ERROR_LINES: counted, summarized in one line
        for kind, a, job in items:
            if kind == "error":
                rs.errors[a] += 1
                if shown < MAX_ERROR_LINES:
                    shown += 1
                    render.render_error(b, a, job)
                else:
                    unshown[a] += 1
            elif kind == "query":
                render.render_text_query(b, a, outcomes[job], self.config)
            elif kind == "whole":
                render.render_whole_image(b, a, outcomes[job], self.config)
            else:
                crop: CropResult = a
                if crop.ok:
                    rs.crops_ok += 1
                else:
                    rs.crops_failed += 1
                    if crop.error_kind != UNREADABLE_SOURCE:  # a broken input file is a search failure, not the model's
                        rs.errors[crop.error_kind] += 1
                render.render_crop(b, crop, None if job is None else outcomes[job], self.config)
        if unshown:
            b.text(_more_errors_line(unshown))
        return b.message()

    async def _run_job(self, kind: str, payload: Any) -> SearchOutcome | None:
        """Prepare the image off the event loop (cropping a large image takes tens of ms), then search."""
        if kind == "text":
            return await self._search("text", payload)
        if kind == "crop":
            crop = await asyncio.to_thread(self.registry.cut, payload)
            if crop.error_kind == UNREADABLE_SOURCE:  # counted once, as the whole-image path counts it
                return SearchOutcome(failure_kind=FailureKind.INTERNAL.value, failure_message=crop.reason)
            return await self._search("image", crop.search_image) if crop.ok else None
        try:
            image = await asyncio.to_thread(self.registry.whole, payload)
        except Exception as e:  # an input image PIL cannot decode
            return SearchOutcome(failure_kind=FailureKind.INTERNAL.value,
                                 failure_message=f"the image could not be read ({type(e).__name__}: {e})")
        return await self._search("image", image)

    async def _search(self, kind: str, payload: Any) -> SearchOutcome:
        """One search under the shared timeout. Never raises (cancellation of the caller aside)."""
        cfg = self.config
        try:
            if kind == "text":
                coro = self.backend.text_search(payload, cfg.top_k)
            else:
                coro = self.backend.image_search(payload, cfg.top_k)
            hits = await asyncio.wait_for(coro, timeout=cfg.search_timeout_s)
        except asyncio.CancelledError:
            raise
        except (asyncio.TimeoutError, TimeoutError):  # distinct types before Python 3.11
            return SearchOutcome(failure_kind=FailureKind.TIMEOUT.value,
                                 failure_message=f"no answer within {cfg.search_timeout_s:g} s")
        except SearchFailure as e:
            return SearchOutcome(failure_kind=e.kind.value, failure_message=e.message)
        except Exception as e:  # a backend bug must not end the rollout; counted as `internal`
            return SearchOutcome(failure_kind=FailureKind.INTERNAL.value,
                                 failure_message=f"{type(e).__name__}: {e}")
        if not isinstance(hits, list) or not all(isinstance(h, Hit) for h in hits):
            return SearchOutcome(failure_kind=FailureKind.BAD_PAYLOAD.value,
                                 failure_message=f"backend {getattr(self.backend, 'name', '?')!r} returned "
                                                 f"{type(hits).__name__}, expected list[Hit]")
        if kind == "text" and cfg.min_text_relevance > 0:
            hits = [h for h in hits if h.score is None or h.score >= cfg.min_text_relevance]
        return SearchOutcome(hits=hits[: cfg.top_k])


def _more_errors_line(kinds: Counter) -> str:
    return (f"... and {sum(kinds.values())} more errors not listed: "
            + ", ".join(f"{kind} x{n}" for kind, n in kinds.most_common()) + "\n")


def _id_number(image_id: str) -> int:
    """N of "img_N", -1 for anything else."""
    head, _, tail = image_id.partition("_")
    return int(tail) if head == "img" and tail.isdigit() and len(tail) < 10 else -1


def _short(value: object) -> str:
    return short_repr(value, limit=120)
