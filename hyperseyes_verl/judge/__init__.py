"""Answer judging for TRACE: rule judge, LLM judge (OpenAI-compatible) with a counted rule fallback."""
from hyperseyes_verl.judge.judge import Judge, JudgeConfig
from hyperseyes_verl.judge.llm import LLMJudge, LLMJudgeConfig, parse_verdict
from hyperseyes_verl.judge.rule import RuleJudge, RuleJudgeConfig, token_f1
from hyperseyes_verl.judge.types import JudgeFailure, Verdict

__all__ = ["Judge", "JudgeConfig", "JudgeFailure", "LLMJudge", "LLMJudgeConfig", "RuleJudge", "RuleJudgeConfig",
           "Verdict", "parse_verdict", "token_f1"]
