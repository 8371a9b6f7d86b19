"""Unified Grounded Search: tool schemas, tolerant parser, image registry, and the search environment."""
from hyperseyes_verl.ugs.environment import SearchEnvironment
from hyperseyes_verl.ugs.parser import ParsedTurn, ParseError, ToolCall, parse_turn
from hyperseyes_verl.ugs.schema import TOOL_SCHEMAS, system_prompt, user_prompt
from hyperseyes_verl.ugs.types import EpisodeStats, Observation, RoundStats, StepResult, UGSConfig

__all__ = [
    "SearchEnvironment", "ParsedTurn", "ParseError", "ToolCall", "parse_turn", "TOOL_SCHEMAS", "system_prompt",
    "user_prompt", "EpisodeStats", "Observation", "RoundStats", "StepResult", "UGSConfig",
]
