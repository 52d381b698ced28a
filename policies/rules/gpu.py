"""GPU node groups: instance-type allowlist, GPU count ceiling, cost facts."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from . import _aws as aws
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy
from ._props import Findings, Unknown, get, number, text

DEFAULT_GPU_TYPES = [
    "g5.*", "g6.*", "g6e.*", "p4d.24xlarge", "p4de.24xlarge", "p5.4xlarge", "p5.48xlarge", "p5e.48xlarge",
    "p5en.48xlarge",
]

TYPES_CONFIG: Schema = {
    "allowedInstanceTypes": {
        "type": "array", "items": {"type": "string"}, "default": DEFAULT_GPU_TYPES,
        "description": "GPU instance types (exact names or shell globs such as g6e.*) this stack may run.",
    },
}


def _allowed(instance_type: str, patterns: list[str]) -> bool:
    return any(fnmatchcase(instance_type, p) for p in patterns)


def _instance_types_allowed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    patterns = [str(p) for p in settings(args, TYPES_CONFIG)["allowedInstanceTypes"]]
    f = Findings(report)
    if args.resource_type == aws.NODE_GROUP:
        types = aws.instance_types(args.props, f)
        tags = aws.effective_tags(args.props, args.provider, f)
        if aws.is_gpu_node_group(args.props, tags, types):
            if not types and not f.unknowns:
                f.violation("The GPU node group does not list instanceTypes; name them explicitly.")
            for t in types:
                if not _allowed(t, patterns):
                    f.violation(f"Instance type {t} is not allowed in this stack (allowed: {', '.join(patterns)}).")
    elif args.resource_type in (aws.LAUNCH_TEMPLATE, aws.INSTANCE):
        single = text(get(args.props, "instanceType"))
        if isinstance(single, Unknown):
            f.unknown(single)
        elif isinstance(single, str) and aws.is_gpu_instance_type(single) and not _allowed(single, patterns):
            f.violation(f"Instance type {single} is not allowed in this stack (allowed: {', '.join(patterns)}).")
    f.done()


gpu_instance_type_allowed = resource_policy("gpu-instance-type-allowed", _instance_types_allowed, TYPES_CONFIG)

CEILING_CONFIG: Schema = {
    "maxGpusPerNodeGroup": {
        "type": "integer", "default": 16, "minimum": 1,
        "description": "Most GPUs one node group may reach at scalingConfig.maxSize.",
    },
}


def _gpu_node_group(
    args: ResourceValidationArgs, report: ReportViolation,
) -> tuple[Findings, list[str], dict[str, Any]] | None:
    """(findings, instance types, effective tags) of a GPU node group; None (checked, nothing to say) otherwise."""
    f = Findings(report)
    types = aws.instance_types(args.props, f)
    tags = aws.effective_tags(args.props, args.provider, f)
    if not aws.is_gpu_node_group(args.props, tags, types):
        f.done()
        return None
    return f, types, tags


def _gpu_ceiling(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.NODE_GROUP:
        return
    ceiling = int(settings(args, CEILING_CONFIG)["maxGpusPerNodeGroup"])
    group = _gpu_node_group(args, report)
    if group is None:
        return
    f, types, _ = group
    unknown_types = [t for t in types if t not in aws.GPUS_PER_INSTANCE]
    if unknown_types:
        f.violation(f"GPU count per node is not known for {', '.join(unknown_types)}; add it to "
                    "GPUS_PER_INSTANCE in policies/rules/_aws.py.")
    per_node = max((aws.GPUS_PER_INSTANCE[t] for t in types if t in aws.GPUS_PER_INSTANCE), default=0)
    max_size = number(get(args.props, "scalingConfig", "maxSize"))
    if isinstance(max_size, Unknown):
        f.unknown(max_size)
    elif max_size is None:
        f.violation("scalingConfig.maxSize is not set, so the GPU count is unbounded.")
    elif per_node and per_node * max_size > ceiling:
        f.violation(f"Up to {int(max_size)} nodes x {per_node} GPUs = {int(per_node * max_size)} GPUs; "
                    f"this stack allows at most {ceiling} per node group.")
    f.done()


gpu_count_ceiling = resource_policy("gpu-count-ceiling", _gpu_ceiling, CEILING_CONFIG)

PURCHASE_OPTIONS = [
    "on-demand", "spot", "savings-plan-1y", "savings-plan-3y", "reserved-1y", "reserved-3y", "odcr", "capacity-block",
]
CAPACITY_TYPE = {"spot": "SPOT", "capacity-block": "CAPACITY_BLOCK"}  # everything else runs ON_DEMAND

COST_TAGS_CONFIG: Schema = {
    "allowedPurchaseOptions": {
        "type": "array", "items": {"type": "string", "enum": PURCHASE_OPTIONS}, "default": PURCHASE_OPTIONS,
        "description": "servekit:purchase values this stack may use (e.g. drop spot in prod).",
    },
}


def _cost_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.NODE_GROUP:
        return
    allowed = list(settings(args, COST_TAGS_CONFIG)["allowedPurchaseOptions"])
    group = _gpu_node_group(args, report)
    if group is None:
        return
    f, _, tags = group
    for key in (aws.GPU_TAG, aws.COST_TAG, aws.PURCHASE_TAG):
        value = tags.get(key)
        if isinstance(value, Unknown):
            f.unknown(value)
        elif not isinstance(value, str) or not value.strip():
            f.violation(f"The GPU node group has no {key} tag.")
    cost = tags.get(aws.COST_TAG)
    if isinstance(cost, str) and cost.strip():
        amount = number(cost)
        if not isinstance(amount, float) or amount < 0:
            f.violation(f"{aws.COST_TAG} is {cost!r}; it must be a non-negative number of USD per month.")
    purchase = tags.get(aws.PURCHASE_TAG)
    if isinstance(purchase, str) and purchase.strip():
        if purchase not in allowed:
            f.violation(f"{aws.PURCHASE_TAG} {purchase!r} is not allowed in this stack "
                        f"(allowed: {', '.join(allowed)}).")
        capacity = get(args.props, "capacityType")
        if isinstance(capacity, Unknown):
            f.unknown(capacity)
        else:
            expected = CAPACITY_TYPE.get(purchase, "ON_DEMAND")
            actual = capacity if isinstance(capacity, str) else "ON_DEMAND"  # the EKS default
            if actual != expected:
                f.violation(f"{aws.PURCHASE_TAG} is {purchase} but capacityType is {actual}; expected {expected}.")
    f.done()


gpu_nodegroup_cost_tags = resource_policy("gpu-nodegroup-cost-tags", _cost_tags, COST_TAGS_CONFIG)

POLICIES: list[AnyPolicy] = [gpu_instance_type_allowed, gpu_count_ceiling, gpu_nodegroup_cost_tags]
