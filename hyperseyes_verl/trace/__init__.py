"""TRACE (Tool-use Reference-Adaptive Cost Efficiency): the official group rule, the paper's per-rollout
rule, and the per-prompt reference store that only ever tightens."""
from hyperseyes_verl.trace.config import TraceConfig, trace_config_from_mapping
from hyperseyes_verl.trace.counts import RolloutCounts, rollout_counts
from hyperseyes_verl.trace.keys import is_validation, prompt_key
from hyperseyes_verl.trace.metrics import trace_metrics
from hyperseyes_verl.trace.official import OfficialScore, OfficialTraceConfig, official_group_scores, score_groups
from hyperseyes_verl.trace.paper import PaperScore, PaperTraceConfig, adapt_lambda, lambda_at, paper_score
from hyperseyes_verl.trace.store import RefInfo, ReferenceStore, StoreConfig

__all__ = ["OfficialScore", "OfficialTraceConfig", "PaperScore", "PaperTraceConfig", "RefInfo", "ReferenceStore",
           "RolloutCounts", "StoreConfig", "TraceConfig", "adapt_lambda", "is_validation", "lambda_at",
           "official_group_scores", "paper_score", "prompt_key", "rollout_counts", "score_groups",
           "trace_config_from_mapping", "trace_metrics"]
