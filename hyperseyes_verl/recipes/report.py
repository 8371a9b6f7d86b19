"""What a recipe validation found: a list of problems (each names the config key or file at fault and what to do)
and the resolved plan (a compact table of what the run would do)."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Problem:
    check: str  # short name of the check that failed, e.g. "data", "model", "import"
    message: str  # what was wrong, with the offending value, and what to do

    def __str__(self) -> str:
        return f"[{self.check}] {self.message}"


@dataclass
class Report:
    stage: str
    problems: list[Problem] = field(default_factory=list)
    plan: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def fail(self, check: str, message: str) -> None:
        self.problems.append(Problem(check, message))

    def note(self, message: str) -> None:
        self.notes.append(message)

    def messages(self, check: str | None = None) -> list[str]:
        return [p.message for p in self.problems if check is None or p.check == check]

    def render(self) -> str:
        lines = [f"recipe stage: {self.stage}"]
        if self.plan:
            width = max(len(k) for k, _ in self.plan)
            lines.append("resolved plan:")
            lines += [f"  {k.ljust(width)}  {v}" for k, v in self.plan]
        lines += [f"note: {n}" for n in self.notes]
        if self.ok:
            lines.append("OK: no problems found")
        else:
            lines.append(f"FAILED: {len(self.problems)} problem(s)")
            lines += [f"  - {p}" for p in self.problems]
        return "\n".join(lines)
