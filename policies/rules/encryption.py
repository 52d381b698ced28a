"""Encryption at rest and in transit, key rotation, audit logging, IMDSv2."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, StackValidationArgs

from . import _aws as aws
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy, stack_policy
from ._props import Findings, Unknown, flag, get, items, iter_known, json_doc, number, text

# ------------------------------------------------------------------ eks-secrets-encrypted-cmk


def _eks_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.CLUSTER:
        return
    f = Findings(report)
    block = get(args.props, "encryptionConfig")  # an object in pulumi-aws 7 (a list in older providers)
    listed = isinstance(block, Sequence) and not isinstance(block, str)
    configs = items(args.props, "encryptionConfig") if listed else [block]
    if block is None:
        f.violation("encryptionConfig is missing; Kubernetes secrets are only encrypted with an AWS-owned key.")
        configs = []
    covered = False
    for cfg in iter_known(configs, f):
        resources = items(cfg, "resources", at=("encryptionConfig",))
        if isinstance(resources, Unknown):
            f.unknown(resources)
            covered = True  # undecidable; do not claim "secrets" is missing
            continue
        if "secrets" not in resources:
            continue
        covered = True
        key = text(get(cfg, "provider", "keyArn", at=("encryptionConfig",)))
        if isinstance(key, Unknown):
            f.unknown(key)  # normal at preview: the key is created in the same stack
        elif key is None:
            f.violation("encryptionConfig.provider.keyArn is empty; name the customer-managed KMS key.")
        elif ":alias/aws/" in key:
            f.violation(f"encryptionConfig uses the AWS-managed key {key}; use a customer-managed key you control.")
    if block is not None and not isinstance(block, Unknown) and not covered:
        f.violation('encryptionConfig.resources does not include "secrets".')
    f.done()


eks_secrets_encrypted_cmk = resource_policy("eks-secrets-encrypted-cmk", _eks_secrets)

# ------------------------------------------------------------------ kms-key-rotation-enabled

ROTATION_CONFIG: Schema = {
    "maxRotationPeriodDays": {
        "type": "integer", "default": 365, "minimum": 90, "maximum": 2560,
        "description": "Longest accepted rotationPeriodInDays.",
    },
}


def _kms_rotation(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.KMS_KEY:
        return
    f = Findings(report)
    spec = get(args.props, "customerMasterKeySpec")
    usage = get(args.props, "keyUsage")
    for v in (spec, usage):
        if isinstance(v, Unknown):
            f.unknown(v)
            f.done()  # raises: whether the key can rotate is not known yet
    if spec not in (None, "SYMMETRIC_DEFAULT") or usage not in (None, "ENCRYPT_DECRYPT"):
        return  # asymmetric and HMAC keys cannot rotate automatically
    enabled = flag(get(args.props, "enableKeyRotation"))
    if isinstance(enabled, Unknown):
        f.unknown(enabled)
    elif enabled is not True:
        f.violation("enableKeyRotation is not true; symmetric customer keys must rotate automatically.")
    period = number(get(args.props, "rotationPeriodInDays"))
    limit = int(settings(args, ROTATION_CONFIG)["maxRotationPeriodDays"])
    if isinstance(period, Unknown):
        f.unknown(period)
    elif period is not None and period > limit:
        f.violation(f"rotationPeriodInDays is {int(period)}; at most {limit} is allowed.")
    f.done()


kms_key_rotation_enabled = resource_policy("kms-key-rotation-enabled", _kms_rotation, ROTATION_CONFIG)

# ------------------------------------------------------------------ ebs-encrypted


def _require_true(value: Any, what: str, f: Findings) -> None:
    v = flag(value)
    if isinstance(v, Unknown):
        f.unknown(v)
    elif v is not True:
        f.violation(f"{what} is not encrypted (encrypted must be true).")


def _ebs(args: ResourceValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    t = args.resource_type
    if t == aws.EBS_VOLUME:
        _require_true(get(args.props, "encrypted"), "The EBS volume", f)
    elif t == aws.LAUNCH_TEMPLATE:
        for i, bdm in enumerate(iter_known(items(args.props, "blockDeviceMappings"), f)):
            ebs = get(bdm, "ebs", at=("blockDeviceMappings", i))
            if isinstance(ebs, Unknown):
                f.unknown(ebs)
            elif ebs is not None:
                device = get(bdm, "deviceName")
                _require_true(get(ebs, "encrypted", at=("blockDeviceMappings", i, "ebs")),
                              f"blockDeviceMappings[{i}] ({device})", f)
    elif t == aws.INSTANCE:
        root = get(args.props, "rootBlockDevice")
        if root is None:
            f.violation("The instance's root volume is not declared, so it is not explicitly encrypted.")
        else:
            _require_true(get(root, "encrypted", at=("rootBlockDevice",)), "rootBlockDevice", f)
        for i, dev in enumerate(iter_known(items(args.props, "ebsBlockDevices"), f)):
            _require_true(get(dev, "encrypted", at=("ebsBlockDevices", i)), f"ebsBlockDevices[{i}]", f)
    f.done()


ebs_encrypted = resource_policy("ebs-encrypted", _ebs)

# ------------------------------------------------------------------ S3 (stack policies: they relate several resources)


def _attached(bucket: PolicyResource, candidates: list[PolicyResource], f: Findings) -> list[PolicyResource]:
    """The candidates whose `bucket` input refers to `bucket`; unknown references are recorded."""
    found: list[PolicyResource] = []
    for c in candidates:
        ref = aws.refers_to(c, "bucket", bucket)
        if isinstance(ref, Unknown):
            f.unknown(ref)
        elif ref:
            found.append(c)
    return found


S3_SSE_CONFIG = {
    "allowedAlgorithms": {
        "type": "array", "items": {"type": "string"}, "default": ["aws:kms", "aws:kms:dsse"],
        "description": "Accepted sseAlgorithm values.",
    },
}


def _sse_rules(res: PolicyResource, key: str, f: Findings) -> list[Any]:
    rules = items(res.props, key)
    if isinstance(rules, Unknown):
        f.unknown(rules)
        return []
    block = get(res.props, key)
    if not rules and isinstance(block, Mapping):
        return [block]
    return list(iter_known(rules, f))


def _algorithms(rules: list[Any], f: Findings) -> list[str]:
    out: list[str] = []
    for r in rules:
        algo = get(r, "applyServerSideEncryptionByDefault", "sseAlgorithm")
        if isinstance(algo, Unknown):
            f.unknown(algo)
        elif isinstance(algo, str):
            out.append(algo)
    return out


def _s3_encrypted(args: StackValidationArgs, report: ReportViolation) -> None:
    allowed = set(settings(args, S3_SSE_CONFIG)["allowedAlgorithms"])
    f = Findings(report)
    configs = aws.resources_of(args.resources, aws.BUCKET_SSE)
    for c in configs:
        for algo in _algorithms(_sse_rules(c, "rules", f), f):
            if algo not in allowed:
                f.violation(f"Encryption configuration {c.name!r} uses {algo}; allowed: {', '.join(sorted(allowed))}.",
                            c.urn)
    for b in aws.resources_of(args.resources, aws.BUCKET):
        before = len(f.unknowns)
        inline = _algorithms(
            [r for cfg in _sse_rules(b, "serverSideEncryptionConfiguration", f) for r in _rule_list(cfg, f)], f
        )
        attached = _attached(b, configs, f)
        if not inline and not attached and len(f.unknowns) == before:
            f.violation(f"Bucket {b.name!r} has no server-side encryption configuration with a KMS key.", b.urn)
        for algo in inline:
            if algo not in allowed:
                f.violation(f"Bucket {b.name!r} uses {algo}; allowed: {', '.join(sorted(allowed))}.", b.urn)
    f.done()


def _rule_list(cfg: Any, f: Findings) -> list[Any]:
    """The legacy inline Bucket.serverSideEncryptionConfiguration holds a `rule` object."""
    rule = get(cfg, "rule")
    if isinstance(rule, Unknown):
        f.unknown(rule)
        return []
    return [rule] if rule is not None else []


s3_encrypted_kms = stack_policy("s3-encrypted-kms", _s3_encrypted, S3_SSE_CONFIG)

_PAB_FLAGS = ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets")


def _s3_public(args: StackValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    blocks = aws.resources_of(args.resources, aws.BUCKET_PAB)
    for pab in blocks:
        off = []
        for name in _PAB_FLAGS:
            v = flag(get(pab.props, name))
            if isinstance(v, Unknown):
                f.unknown(v)
            elif v is not True:
                off.append(name)
        if off:
            f.violation(f"Public access block {pab.name!r} leaves {', '.join(off)} off.", pab.urn)
    for b in aws.resources_of(args.resources, aws.BUCKET):
        before = len(f.unknowns)
        if not _attached(b, blocks, f) and len(f.unknowns) == before:
            f.violation(f"Bucket {b.name!r} has no BucketPublicAccessBlock.", b.urn)
    f.done()


s3_public_access_blocked = stack_policy("s3-public-access-blocked", _s3_public)


def _denies_insecure_transport(doc: Any) -> bool:
    """A Deny-everything-to-everyone statement conditioned on aws:SecureTransport = false."""
    if not isinstance(doc, dict):
        return False
    statements = doc.get("Statement")
    if isinstance(statements, dict):
        statements = [statements]
    for st in statements if isinstance(statements, list) else []:
        if not isinstance(st, dict) or st.get("Effect") != "Deny":
            continue
        principal = st.get("Principal")
        if principal not in ("*", {"AWS": "*"}, {"AWS": ["*"]}):
            continue
        actions = st.get("Action")
        actions = [actions] if isinstance(actions, str) else actions
        if not isinstance(actions, list) or not {"s3:*", "*"} & {a for a in actions if isinstance(a, str)}:
            continue
        cond = st.get("Condition")
        bool_cond = cond.get("Bool") if isinstance(cond, dict) else None
        value = bool_cond.get("aws:SecureTransport") if isinstance(bool_cond, dict) else None
        values = value if isinstance(value, list) else [value]
        if any(str(v).lower() == "false" for v in values):
            return True
    return False


def _s3_tls(args: StackValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    policies = aws.resources_of(args.resources, aws.BUCKET_POLICY)
    for b in aws.resources_of(args.resources, aws.BUCKET):
        docs = [json_doc(get(p.props, "policy")) for p in _attached(b, policies, f)]
        docs.append(json_doc(get(b.props, "policy")))
        if any(_denies_insecure_transport(d) for d in docs):
            continue
        unknown = [d for d in docs if isinstance(d, Unknown)]
        if unknown:
            f.unknown(unknown[0])  # the policy JSON usually embeds the bucket ARN: known at `up`
        else:
            f.violation(
                f"Bucket {b.name!r} has no policy statement denying requests with aws:SecureTransport=false.", b.urn
            )
    f.done()


s3_tls_only = stack_policy("s3-tls-only", _s3_tls)

# ------------------------------------------------------------------ CloudWatch logs, SNS


def _log_groups(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.LOG_GROUP:
        return
    f = Findings(report)
    key = text(get(args.props, "kmsKeyId"))
    if isinstance(key, Unknown):
        f.unknown(key)  # computed key ARN: present, just not known yet
    elif key is None:
        f.violation("kmsKeyId is not set; the log group is only encrypted with a CloudWatch-owned key.")
    f.done()


log_groups_encrypted = resource_policy("log-groups-encrypted", _log_groups)

RETENTION_CONFIG: Schema = {
    "minLogRetentionDays": {
        "type": "integer", "default": 90, "minimum": 1,
        "description": "Shortest accepted retentionInDays (unset = never expire, accepted).",
    },
}


def _retention(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.LOG_GROUP:
        return
    minimum = int(settings(args, RETENTION_CONFIG)["minLogRetentionDays"])
    f = Findings(report)
    days = number(get(args.props, "retentionInDays"))
    if isinstance(days, Unknown):
        f.unknown(days)
    elif days is not None and days != 0 and days < minimum:
        f.violation(f"retentionInDays is {int(days)}; this stack keeps logs at least {minimum} days.")
    f.done()


log_retention_minimum = resource_policy("log-retention-minimum", _retention, RETENTION_CONFIG)

AUDIT_CONFIG: Schema = {
    "requiredLogTypes": {
        "type": "array", "items": {"type": "string", "enum": ["api", "audit", "authenticator",
                                                              "controllerManager", "scheduler"]},
        "default": ["api", "audit", "authenticator"],
        "description": "Control-plane log types that must be enabled.",
    },
}


def _audit_logging(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.CLUSTER:
        return
    required = list(settings(args, AUDIT_CONFIG)["requiredLogTypes"])
    f = Findings(report)
    enabled = items(args.props, "enabledClusterLogTypes")
    known = [t for t in iter_known(enabled, f)]
    if not isinstance(enabled, Unknown) and len(known) == len(enabled):
        missing = [t for t in required if t not in known]
        if missing:
            f.violation(f"enabledClusterLogTypes lacks {', '.join(missing)}.")
    f.done()


eks_control_plane_audit_logging = resource_policy("eks-control-plane-audit-logging", _audit_logging, AUDIT_CONFIG)


def _sns(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.SNS_TOPIC:
        return
    f = Findings(report)
    key = text(get(args.props, "kmsMasterKeyId"))
    if isinstance(key, Unknown):
        f.unknown(key)
    elif key is None:
        f.violation("kmsMasterKeyId is not set; the topic is not encrypted at rest.")
    f.done()


sns_topic_encrypted = resource_policy("sns-topic-encrypted", _sns)

# ------------------------------------------------------------------ imdsv2-required

IMDS_CONFIG: Schema = {
    "maxHopLimit": {
        "type": "integer", "default": 2, "minimum": 1, "maximum": 64,
        "description": "Largest accepted httpPutResponseHopLimit (1 keeps pods away from node credentials).",
    },
}


def _metadata_options(props: Any, max_hops: int, what: str, f: Findings) -> None:
    endpoint = get(props, "metadataOptions", "httpEndpoint")
    if endpoint == "disabled":
        return  # no IMDS at all
    tokens = get(props, "metadataOptions", "httpTokens")
    if isinstance(tokens, Unknown):
        f.unknown(tokens)
    elif tokens != "required":
        got = "unset (IMDSv1 allowed)" if tokens is None else repr(tokens)
        f.violation(f"{what} metadataOptions.httpTokens is {got}; it must be \"required\".")
    hops = number(get(props, "metadataOptions", "httpPutResponseHopLimit"))
    if isinstance(hops, Unknown):
        f.unknown(hops)
    elif hops is not None and hops > max_hops:
        f.violation(f"{what} metadataOptions.httpPutResponseHopLimit is {int(hops)}; at most {max_hops} is allowed.")


def _imdsv2(args: ResourceValidationArgs, report: ReportViolation) -> None:
    max_hops = int(settings(args, IMDS_CONFIG)["maxHopLimit"])
    f = Findings(report)
    t = args.resource_type
    if t == aws.LAUNCH_TEMPLATE:
        _metadata_options(args.props, max_hops, "The launch template's", f)
    elif t == aws.INSTANCE:
        _metadata_options(args.props, max_hops, "The instance's", f)
    elif t == aws.NODE_GROUP:
        lt = get(args.props, "launchTemplate")
        if lt is None:
            f.violation(
                "The node group has no launchTemplate, so EKS's default template decides IMDS and disk "
                "encryption; pass a launch template that requires IMDSv2."
            )
    f.done()


imdsv2_required = resource_policy("imdsv2-required", _imdsv2, IMDS_CONFIG)

POLICIES: list[AnyPolicy] = [
    eks_secrets_encrypted_cmk,
    kms_key_rotation_enabled,
    ebs_encrypted,
    s3_encrypted_kms,
    s3_public_access_blocked,
    s3_tls_only,
    log_groups_encrypted,
    log_retention_minimum,
    eks_control_plane_audit_logging,
    sns_topic_encrypted,
    imdsv2_required,
]
