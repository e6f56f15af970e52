"""Release gates: a readiness spec of checks, a PASS / WARN / FAIL decision with evidence, the dossier, promotion."""

from forgepilot.gates.context import CheckResult, Target
from forgepilot.gates.engine import Decision, latest_decision, pin_spec, promote, run_gate
from forgepilot.gates.perturb import PERTURBATIONS, perturb
from forgepilot.gates.spec import LoadedSpec, Spec, SpecError, load_spec

__all__ = [
    "PERTURBATIONS",
    "CheckResult",
    "Decision",
    "LoadedSpec",
    "Spec",
    "SpecError",
    "Target",
    "latest_decision",
    "load_spec",
    "perturb",
    "pin_spec",
    "promote",
    "run_gate",
]
