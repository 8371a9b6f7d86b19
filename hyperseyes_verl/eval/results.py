"""One evaluated item as a plain record, and the append-only JSONL file that holds a run's records.

The file is the run's only state: an interrupted run is resumed by reading it back and skipping the ids it
already holds, except items that did not finish (endpoint failures, errors): those run again and their new line
supersedes the old one. A line cut short by a kill is ignored (and its item re-run), never half-read.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hyperseyes_verl.utils.jsonl import AppendOnlyJsonl

log = logging.getLogger(__name__)

RESULTS_FILE = "results.jsonl"


class ItemResult(BaseModel):
    """What one episode on one benchmark item produced. Counts follow CONTRACTS §3."""

    model_config = ConfigDict(extra="ignore")

    id: str = Field(description="stable item id, `benchmark/index`")
    benchmark: str
    domain: str = "unknown"
    entity_count: int = Field(-1, description="entities in the item; -1 when the benchmark does not say")
    question: str = ""
    answers: list[str] = Field(default_factory=list)
    prediction: str | None = None
    acc: float = Field(0.0, description="judge verdict, 0/1; 0 when there is no answer")
    judge_source: str = Field("none", description="rule | llm | rule_fallback | none (no answer to judge)")
    answered: bool = False
    tool_rounds: int = 0
    tool_calls: int = 0
    searches: int = 0
    searches_per_round: list[int] = Field(default_factory=list)
    searches_empty: int = Field(0, description="searches that answered with no hit (not failures): a crop that "
                                "matches nothing, a query that finds nothing")
    generated_tokens: int = Field(0, description="completion tokens summed over the episode's turns")
    tokens_estimated: bool = Field(False, description="some turn had no `usage`: tokens estimated from characters")
    finish_reason: str = "running"
    budget_exhausted: bool = False
    truncated: bool = False
    search_failures: int = 0
    tool_errors: dict[str, int] = Field(default_factory=dict)
    endpoint_errors: int = Field(0, description="model requests that failed (after retries) in this episode")
    error: str | None = Field(None, description="why the episode could not finish, if it could not")
    wall_s: float = 0.0
    trajectory: list[dict] | None = Field(None, description="text-only messages, when the run keeps them")

    @property
    def final(self) -> bool:
        """False for an episode that could not finish (endpoint down, unreadable input): a resumed run retries it."""
        return self.error is None and self.finish_reason != "endpoint_error"


class ResultsFile:
    """Append-only `results.jsonl` in a run directory; one line per finished item."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / RESULTS_FILE
        self._log = AppendOnlyJsonl(self.path)

    def load(self) -> list[ItemResult]:
        """All complete records, the last line of each id kept (a retried item supersedes its failure; no id is
        counted twice)."""
        out: dict[str, ItemResult] = {}
        for row in self._log.records():  # a line cut by a kill is skipped there; its item simply runs again
            try:
                rec = ItemResult.model_validate(row)
            except ValidationError as e:
                log.warning("%s: result line for %r skipped (%s); that item will be re-run",
                            self.path, row.get("id"), str(e).splitlines()[0])
                continue
            out.pop(rec.id, None)  # keep the run's item order: a retried item moves to where it finished
            out[rec.id] = rec
        return list(out.values())

    def done_ids(self) -> set[str]:
        """Ids with a final result (not to be run again)."""
        return {r.id for r in self.load() if r.final}

    def append(self, rec: ItemResult) -> None:
        self._log.append(rec.model_dump_json())


def load_run(run_dir: str | os.PathLike) -> list[ItemResult]:
    """Records of a finished or partial run; a clear error if the directory holds none."""
    rf = ResultsFile(run_dir)
    if not rf.path.exists():
        raise FileNotFoundError(f"no {RESULTS_FILE} in {str(run_dir)!r}: pass a directory written by "
                                f"`hyperseyes eval --out DIR` (or `hyperseyes demo`)")
    return rf.load()
