"""Required ownership and classification tags on every taggable AWS resource."""

from __future__ import annotations

from pulumi_policy import ReportViolation, ResourceValidationArgs

from . import _aws as aws
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy
from ._props import Findings, Unknown, get

DATA_CLASSIFICATIONS = ["public", "internal", "confidential", "restricted"]

TAGS_CONFIG: Schema = {
    "requiredTags": {
        "type": "array", "items": {"type": "string"}, "default": ["owner", "cost-center", "data-classification"],
        "description": "Tag keys every taggable AWS resource must carry with a non-empty value.",
    },
    "allowedDataClassifications": {
        "type": "array", "items": {"type": "string", "enum": DATA_CLASSIFICATIONS}, "default": DATA_CLASSIFICATIONS,
        "description": "Values the data-classification tag may take in this stack.",
    },
}


def is_taggable(args: ResourceValidationArgs) -> bool:
    if not args.resource_type.startswith("aws:"):
        return False
    return args.resource_type in aws.TAGGABLE or get(args.props, "tags") is not None


def _required_tags(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not is_taggable(args):
        return
    cfg = settings(args, TAGS_CONFIG)
    f = Findings(report)
    tags = aws.effective_tags(args.props, args.provider, f)
    missing = []
    for key in cfg["requiredTags"]:
        value = tags.get(key)
        if isinstance(value, Unknown):
            f.unknown(value)  # present, value computed
        elif not isinstance(value, str) or not value.strip():
            missing.append(key)
    if missing:
        f.violation(f"Missing tag(s) {', '.join(missing)} (set them on the resource or as provider defaultTags).")
    classification = tags.get("data-classification")
    allowed = list(cfg["allowedDataClassifications"])
    if isinstance(classification, str) and classification.strip() and classification not in allowed:
        f.violation(f"data-classification {classification!r} is not allowed in this stack "
                    f"(allowed: {', '.join(allowed)}).")
    f.done()


required_tags = resource_policy("required-tags", _required_tags, TAGS_CONFIG)

POLICIES: list[AnyPolicy] = [required_tags]
