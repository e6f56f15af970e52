"""The evaluation harness: suites, sandboxed execution, metrics, runs through the serving path, comparisons, reports."""

from forgepilot.evals.compare import compare_results, mcnemar, paired_bootstrap
from forgepilot.evals.metrics import edit_similarity, exact_match, identifier_match, pass_at_k
from forgepilot.evals.ray_fanout import RayFanout
from forgepilot.evals.runner import CaseFanout, CaseJudge, CaseResult, EvalRunner, GenerationParams, RunConfig
from forgepilot.evals.store import EvalStore, RunRow, open_store
from forgepilot.evals.suites import HUMANEVAL, Case, Suite, SuiteError, humaneval, load_suite
from forgepilot.evals.summary import summarize

__all__ = [
    "HUMANEVAL",
    "Case",
    "CaseFanout",
    "CaseJudge",
    "CaseResult",
    "EvalRunner",
    "EvalStore",
    "GenerationParams",
    "RayFanout",
    "RunConfig",
    "RunRow",
    "Suite",
    "SuiteError",
    "compare_results",
    "edit_similarity",
    "exact_match",
    "humaneval",
    "identifier_match",
    "load_suite",
    "mcnemar",
    "open_store",
    "paired_bootstrap",
    "pass_at_k",
    "summarize",
]
