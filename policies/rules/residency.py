"""Data residency: regional AWS resources only in the stack's allowed regions."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs

from . import _aws as aws
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy
from ._props import Findings, Unknown, get, text

REGION_CONFIG: Schema = {
    "allowedRegions": {
        "type": "array", "items": {"type": "string", "pattern": "^[a-z]{2}(-[a-z]+)+-\\d$"}, "default": [],
        "description": "AWS regions this stack's resources may live in (empty: no residency constraint).",
    },
}

# pulumi-aws modules whose resources are global (no region to check).
GLOBAL_MODULES = frozenset({"iam", "route53", "route53domains", "cloudfront", "organizations", "budgets",
                            "globalaccelerator", "shield", "waf"})


def _module(resource_type: str) -> str:
    parts = resource_type.split(":")
    return parts[1].split("/")[0] if len(parts) == 3 else ""


def _region_allowed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not args.resource_type.startswith("aws:") or _module(args.resource_type) in GLOBAL_MODULES:
        return
    allowed = [str(r) for r in settings(args, REGION_CONFIG)["allowedRegions"]]
    if not allowed:
        return
    f = Findings(report)
    own = text(get(args.props, "region"))
    region = own if own is not None else aws.provider_region(args.provider)
    if isinstance(region, Unknown):
        f.unknown(region)
    elif region is None:
        f.violation("The region is not pinned (no region input and no aws:region on the provider), so residency "
                    f"cannot be guaranteed; allowed: {', '.join(allowed)}.")
    elif region not in allowed:
        f.violation(f"Region {region} is not allowed for this stack's data (allowed: {', '.join(allowed)}).")
    zone = text(get(args.props, "availabilityZone"))
    if isinstance(zone, Unknown):
        f.unknown(zone)
    elif isinstance(zone, str) and not any(zone.startswith(f"{r}") for r in allowed):
        f.violation(f"Availability zone {zone} is outside the allowed regions ({', '.join(allowed)}).")
    f.done()


region_allowed = resource_policy("region-allowed", _region_allowed, REGION_CONFIG)

POLICIES: list[AnyPolicy] = [region_allowed]
