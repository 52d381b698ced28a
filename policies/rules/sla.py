"""The SLA gate: stacks that must prove their latency SLA after deploy run a gate Job."""

from __future__ import annotations

from typing import Any

from pulumi_policy import ReportViolation, StackValidationArgs

from . import _k8s as k8s
from ._config import Schema, settings
from ._meta import AnyPolicy, stack_policy
from ._props import Findings, Unknown
from .licensing import ENVIRONMENT

GATE_ROLE = "sla-gate"

SLA_CONFIG: Schema = {
    "environment": ENVIRONMENT,
    "requireSlaGate": {
        "type": "boolean",
        "description": "Require an SLA gate (default: environment is prod).",
    },
}


def _required(cfg: dict[str, Any]) -> bool:
    explicit = cfg.get("requireSlaGate")
    return bool(explicit) if explicit is not None else cfg["environment"] == "prod"


def _sla_gate(args: StackValidationArgs, report: ReportViolation) -> None:
    if not _required(settings(args, SLA_CONFIG)):
        return
    f = Findings(report)
    serving: list[str] = []
    gates = 0
    for r in args.resources:
        if r.resource_type not in k8s.WORKLOADS:
            continue
        is_serving = k8s.is_serving(r.props, r.resource_type)
        if isinstance(is_serving, Unknown):
            f.unknown(is_serving)
        elif is_serving:
            serving.append(r.name)
        if r.resource_type in (k8s.JOB, k8s.CRON_JOB):
            role = k8s.servekit_value(r.props, r.resource_type, k8s.ROLE)
            if isinstance(role, Unknown):
                f.unknown(role)
            elif role == GATE_ROLE:
                gates += 1
    if serving and not gates and not f.unknowns:
        f.violation(f"The stack serves {', '.join(sorted(serving))} but has no Job or CronJob labelled "
                    f"{k8s.ROLE}={GATE_ROLE}; prod deploys must verify their latency SLA.")
    f.done()


sla_gate_required = stack_policy("sla-gate-required", _sla_gate, SLA_CONFIG)

POLICIES: list[AnyPolicy] = [sla_gate_required]
