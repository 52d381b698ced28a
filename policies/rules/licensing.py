"""Model licences: the stack's allowlist, commercial use, and the servekit.io/* facts serving workloads carry."""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import ReportViolation, ResourceValidationArgs

from . import _k8s as k8s
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy
from ._props import Findings, Unknown, number
from .tagging import DATA_CLASSIFICATIONS

LICENSE = f"{k8s.PREFIX}license"
COMMERCIAL = f"{k8s.PREFIX}commercial-use"
CLASSIFICATION = f"{k8s.PREFIX}data-classification"
SLA_P95 = f"{k8s.PREFIX}sla-p95-seconds"

ENVIRONMENT = {
    "type": "string", "enum": ["dev", "staging", "prod"], "default": "dev",
    "description": "The stack's environment; prod tightens the defaults of environment-dependent settings.",
}

LICENSE_CONFIG: Schema = {
    "allowedLicenses": {
        "type": "array", "items": {"type": "string"}, "default": ["Apache-2.0", "MIT"],
        "description": "Licence ids (models/*.yaml license.id, SPDX where one exists) this stack may serve.",
    },
    "commercialOnly": {
        "type": "boolean",
        "description": "Refuse models whose licence does not allow commercial use (default: environment is prod).",
    },
    "environment": ENVIRONMENT,
}

# Creative Commons non-commercial variants (CC-BY-NC-4.0, CC-BY-NC-SA-4.0, ...).
NON_COMMERCIAL = re.compile(r"(^|-)NC(-|$)", re.I)


def _commercial_only(cfg: dict[str, Any]) -> bool:
    explicit = cfg.get("commercialOnly")
    return bool(explicit) if explicit is not None else cfg["environment"] == "prod"


def _serving(args: ResourceValidationArgs, f: Findings) -> bool:
    serving = k8s.is_serving(args.props, args.resource_type)
    if isinstance(serving, Unknown):
        f.unknown(serving)
        return False
    return serving


def _license_allowed(args: ResourceValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    if not _serving(args, f):
        f.done()
        return
    cfg = settings(args, LICENSE_CONFIG)
    allowed = {str(x).lower() for x in cfg["allowedLicenses"]}
    lic = k8s.servekit_value(args.props, args.resource_type, LICENSE)
    commercial = k8s.servekit_value(args.props, args.resource_type, COMMERCIAL)
    model = k8s.servekit_value(args.props, args.resource_type, k8s.MODEL)
    what = f"model {model}" if isinstance(model, str) else "the served model"
    for v in (lic, commercial):
        if isinstance(v, Unknown):
            f.unknown(v)
    if lic is None:
        f.violation(f"{LICENSE} is missing, so the licence of {what} cannot be checked.")
    elif isinstance(lic, str):
        if lic.lower() not in allowed:
            f.violation(f"{what} is licensed {lic}, which this stack does not allow "
                        f"(allowed: {', '.join(sorted(cfg['allowedLicenses']))}).")
        if NON_COMMERCIAL.search(lic) and commercial == "true":
            f.violation(f"{COMMERCIAL} says true but {lic} is a non-commercial licence.")
    if _commercial_only(cfg) and not isinstance(commercial, Unknown) and commercial != "true":
        shown = "missing" if commercial is None else repr(commercial)
        f.violation(f"This stack serves commercially only, but {what} has {COMMERCIAL} {shown}.")
    f.done()


model_license_allowed = resource_policy("model-license-allowed", _license_allowed, LICENSE_CONFIG)

LABELS_CONFIG: Schema = {
    "allowedDataClassifications": {
        "type": "array", "items": {"type": "string", "enum": DATA_CLASSIFICATIONS}, "default": DATA_CLASSIFICATIONS,
        "description": "Values servekit.io/data-classification may take in this stack.",
    },
}


def _serving_labels(args: ResourceValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    if not _serving(args, f):
        f.done()
        return
    allowed = list(settings(args, LABELS_CONFIG)["allowedDataClassifications"])
    values = {
        key: k8s.servekit_value(args.props, args.resource_type, key)
        for key in (k8s.MODEL, LICENSE, COMMERCIAL, CLASSIFICATION, SLA_P95)
    }
    for v in values.values():
        if isinstance(v, Unknown):
            f.unknown(v)
    missing = [k for k, v in values.items() if v is None or (isinstance(v, str) and not v.strip())]
    if missing:
        f.violation(f"Serving workload lacks {', '.join(missing)} (labels or annotations).")
    commercial = values[COMMERCIAL]
    if isinstance(commercial, str) and commercial not in ("true", "false"):
        f.violation(f"{COMMERCIAL} is {commercial!r}; it must be \"true\" or \"false\".")
    classification = values[CLASSIFICATION]
    if isinstance(classification, str) and classification and classification not in allowed:
        f.violation(f"{CLASSIFICATION} {classification!r} is not allowed in this stack "
                    f"(allowed: {', '.join(allowed)}).")
    p95 = values[SLA_P95]
    if isinstance(p95, str) and p95.strip():
        seconds = number(p95)
        if not isinstance(seconds, float) or seconds <= 0:
            f.violation(f"{SLA_P95} is {p95!r}; it must be a positive number of seconds.")
    f.done()


serving_workload_labels = resource_policy("serving-workload-labels", _serving_labels, LABELS_CONFIG)

POLICIES: list[AnyPolicy] = [model_license_allowed, serving_workload_labels]
