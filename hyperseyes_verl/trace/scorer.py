"""Scores one finished rollout for TRACE: judge the answer, count rounds, look up / observe the prompt's
reference, and produce `reward_score` plus the `reward_extra_info` of CONTRACTS §4 (`contracts.RewardInfo`).
Pure of verl; the verl reward manager only decodes the row, hands over its store connection
(`hyperseyes_verl.verl.store_actor.get_store`) and calls `TraceScorer.score`."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from hyperseyes_verl.contracts import RewardInfo, TrajectoryFields
from hyperseyes_verl.judge.answer import final_answer
from hyperseyes_verl.judge.judge import Judge
from hyperseyes_verl.trace.config import TraceConfig
from hyperseyes_verl.trace.counts import RolloutCounts, release_counts, rollout_counts
from hyperseyes_verl.trace.keys import is_validation, prompt_key
from hyperseyes_verl.trace.paper import lambda_at, paper_score
from hyperseyes_verl.trace.shared import StoreHandle, local_store
from hyperseyes_verl.trace.store import NONE, RefInfo, StoreConfig
from hyperseyes_verl.ugs.parser import PARSE_ERROR_KINDS

logger = logging.getLogger(__name__)

EXTRA_KEYS = RewardInfo.contract_keys()


@dataclass
class RolloutInput:
    """What the reward needs from one trajectory (plain data)."""

    response_text: str  # the decoded response, special tokens kept
    ground_truth: Any  # str or list of accepted answers
    data_source: str = "unknown"
    index: Any = None  # extra_info.index (None: fall back to a prompt hash)
    extra_info: Mapping[str, Any] = field(default_factory=dict)
    tool_extra_fields: Mapping[str, Any] | None = None  # `TrajectoryFields` as a dict, or another loop's fields
    num_turns: int | None = None
    global_step: int | None = None
    raw_prompt: Any = None


def _int_or_none(value: Any) -> int:
    try:
        return NONE if value is None else int(value)
    except (TypeError, ValueError):
        return NONE


def accepted_answers(ground_truth: Any, extra_info: Mapping[str, Any]) -> list[str]:
    answers = list(ground_truth) if isinstance(ground_truth, (list, tuple)) else [ground_truth]
    answers += list(extra_info.get("answers") or [])
    out = [str(a) for a in answers if a is not None and str(a).strip()]
    if not out:
        raise ValueError("the row has no ground truth (reward_model.ground_truth and extra_info.answers are empty); "
                         "every RL row needs at least one accepted answer")
    return list(dict.fromkeys(out))


class TraceScorer:
    """`store`: a fixed store; else `connect(config.store)` makes one on first use (and again after a failure)."""

    def __init__(self, config: TraceConfig, judge: Judge | None = None, store: StoreHandle | None = None,
                 connect: Callable[[StoreConfig], StoreHandle] = local_store):
        self.config = config
        self.judge = judge or Judge(config.judge)
        self._store = store
        self._own_store = store is None
        self._connect = connect
        self._warned_no_step = False

    @property
    def store(self) -> StoreHandle:
        if self._store is None:  # lazily: the Ray actor is reached from inside the reward worker
            self._store = self._connect(self.config.store)
        return self._store

    def _answer(self, x: RolloutInput, traj: TrajectoryFields) -> tuple[str | None, bool]:
        if self.config.answer_from != "response" and "answer" in (x.tool_extra_fields or {}):
            answer = traj.answer
            answer = None if answer is None or not str(answer).strip() else str(answer)
            return answer, answer is not None
        if self.config.answer_from == "agent":
            raise ValueError("hyperseyes.trace.answer_from='agent' but tool_extra_fields has no 'answer': use the "
                             "hyperseyes agent loop or set answer_from='auto'")
        answer = final_answer(x.response_text)
        return answer, answer is not None

    @staticmethod
    def _format_ok(traj: TrajectoryFields, answered: bool) -> bool:
        bad = any(v > 0 for k, v in traj.tool_errors.items() if k in PARSE_ERROR_KINDS)
        return answered and not bad and not traj.truncated

    async def _reference(self, key: str, validation: bool, init_r: int, init_s: int, correct: bool,
                         rounds: int, searches: int) -> tuple[RefInfo, bool]:
        """The prompt's reference and whether the store failed (then the dataset's reference is used)."""
        if validation:  # never observed, never stored: validation keeps the dataset's reference
            return RefInfo(init_r, init_s, None, -1), False
        try:
            return await self.store.arecord(key, init_r, init_s, correct, rounds, searches), False
        except Exception as e:  # a dead store actor must not kill training: flagged per row (trace/store_errors)
            if self._own_store and self._store is not None and self._store.is_remote:
                # e.g. the actor died with its owner: get (or re-create) it on the next row
                self._store.disconnect()
                self._store = None
            logger.warning("TRACE reference store failed (%s: %s); using the dataset reference for %s",
                           type(e).__name__, e, key)
            return RefInfo(init_r, init_s, None, -1), True

    def _lambda(self, x: RolloutInput, info: RefInfo) -> float:
        if x.global_step is None and self.config.paper.schedule == "linear_warmup":
            if not self._warned_no_step:
                self._warned_no_step = True
                logger.warning("TRACE linear λ warm-up needs the rows' global_steps (verl's V1 trainer sends them); "
                               "this trainer does not, so the full λ=%s is used", self.config.paper.lam)
            return self.config.paper.lam
        return lambda_at(self.config.paper, x.global_step, info.lam)

    async def score(self, x: RolloutInput) -> dict[str, Any]:
        extra_info = dict(x.extra_info or {})
        answers = accepted_answers(x.ground_truth, extra_info)
        traj = TrajectoryFields.from_mapping(x.tool_extra_fields or {})  # defaults for another agent loop
        answer, answered = self._answer(x, traj)
        counts = rollout_counts(x.tool_extra_fields, x.num_turns)
        if self.config.mode == "official" and self.config.official.counting == "release":
            # parity: tc / total read from the response as the release reads them (official.counting)
            release = release_counts(x.response_text)
            counts = RolloutCounts(release.tool_calls, release.tool_calls, release.searches, "release")
            if release.parse_failed:  # the release's parser raised and returned no final answer either
                answer, answered = None, False
        verdict = await self.judge.judge(answer, answers, str(extra_info.get("question", "")))
        correct = verdict.correct and answered
        validation = is_validation(extra_info, self.config.validation_marker, self.config.validation_values)
        split = str(extra_info.get(self.config.validation_marker) or "") if validation else None
        key = prompt_key(x.data_source, extra_info.get("index", x.index), split, x.raw_prompt)
        init_r, init_s = _int_or_none(extra_info.get("ref_rounds")), _int_or_none(extra_info.get("ref_searches"))
        info, store_error = await self._reference(key, validation, init_r, init_s, correct, counts.tool_rounds,
                                                  counts.searches)

        acc = 1.0 if correct else 0.0
        if self.config.mode == "paper":
            lam = self._lambda(x, info)
            ps = paper_score(self.config.paper, correct, answered, counts.tool_rounds, info.rounds, lam)
            reward, bonus = ps.score, ps.bonus
        else:
            reward, bonus = (acc if answered else self.config.official.no_answer_score), 0.0
        extra = RewardInfo(
            acc=acc, answered=int(answered), tool_rounds=counts.tool_rounds, tool_calls=counts.tool_calls,
            searches=counts.searches, ref_rounds=info.rounds, ref_searches=info.searches, trace_bonus=bonus,
            opd_eligible=int(acc <= 0), judge_source="rule" if verdict.source == "no_answer" else verdict.source,
            prompt_key=key, hdpo_format=int(self._format_ok(traj, answered)),
            store_error=int(store_error))
        return {"reward_score": float(reward), "reward_extra_info": extra.to_dict()}
