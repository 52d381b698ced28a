"""The budget: the node groups' estimated monthly cost (servekit:monthly-cost-usd tags) within budgetMonthlyUsd."""

from __future__ import annotations

from pulumi_policy import ReportViolation, StackValidationArgs

from . import _aws as aws
from ._config import Schema, settings
from ._meta import AnyPolicy, stack_policy
from ._props import Findings, Unknown, entries, number

BUDGET_CONFIG: Schema = {
    "budgetMonthlyUsd": {
        "type": "number", "exclusiveMinimum": 0,
        "description": "Approved monthly spend ceiling in USD (unset: no budget check).",
    },
}


def _budget(args: StackValidationArgs, report: ReportViolation) -> None:
    budget = settings(args, BUDGET_CONFIG).get("budgetMonthlyUsd")
    if budget is None:
        return
    f = Findings(report)
    total = 0.0
    parts: list[tuple[float, str]] = []
    # Node groups only: the same tag is copied onto launch templates and instances for cost
    # allocation, and counting those copies would bill a node group two or three times.
    for r in aws.resources_of(args.resources, aws.NODE_GROUP):
        tags = entries(r.props, "tags")
        if isinstance(tags, Unknown):
            f.unknown(tags)
            continue
        raw = tags.get(aws.COST_TAG)
        if isinstance(raw, Unknown):
            f.unknown(raw)
            continue
        if raw is None:
            if aws.is_gpu_node_group(r.props, tags, aws.instance_types(r.props, f)):
                f.violation(f"GPU node group {r.name!r} has no {aws.COST_TAG} tag, so the budget cannot be checked.",
                            r.urn)
            continue
        amount = number(raw)
        if not isinstance(amount, float) or amount < 0:
            f.violation(f"{r.name!r} has {aws.COST_TAG}={raw!r}, which is not a cost in USD.", r.urn)
            continue
        total += amount
        parts.append((amount, r.name))
    if total > float(budget) and not f.unknowns:
        top = ", ".join(f"{name} ${amount:,.0f}" for amount, name in sorted(parts, reverse=True)[:5])
        f.violation(f"Estimated monthly cost ${total:,.0f} of the node groups exceeds the budget "
                    f"${float(budget):,.0f} ({top}).")
    f.done()


monthly_budget = stack_policy("monthly-budget", _budget, BUDGET_CONFIG)

POLICIES: list[AnyPolicy] = [monthly_budget]
