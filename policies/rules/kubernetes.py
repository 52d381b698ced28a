"""Kubernetes workload hygiene: pinned images, resources, no host access, probes, secrets, NetworkPolicy, PDB."""

from __future__ import annotations

import re
from typing import Any

from pulumi_policy import PolicyResource, ReportViolation, ResourceValidationArgs, Secret, StackValidationArgs

from . import _k8s as k8s
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy, stack_policy
from ._props import Findings, Unknown, first_unknown, flag, get, items, iter_known, number, plain, text

# ------------------------------------------------------------------ k8s-image-pinned

IMAGE_CONFIG: Schema = {
    "requireDigest": {
        "type": "boolean", "default": False,
        "description": "Require an @sha256 digest, not only an immutable-looking tag.",
    },
    "forbiddenTags": {
        "type": "array", "items": {"type": "string"},
        "default": ["latest", "nightly", "main", "master", "edge", "dev"],
        "description": "Tags that move and therefore do not pin anything.",
    },
}

_DIGEST = re.compile(r"@sha256:[0-9a-f]{64}$")


def split_image(image: str) -> tuple[str, str | None, str | None]:
    """``registry[:port]/repo[:tag][@digest]`` -> (repository, tag, digest)."""
    rest, _, digest = image.partition("@")
    slash = rest.rfind("/")
    colon = rest.rfind(":")
    if colon > slash:
        return rest[:colon], rest[colon + 1:] or None, digest or None
    return rest, None, digest or None


def _image_pinned(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in k8s.WORKLOADS:
        return
    cfg = settings(args, IMAGE_CONFIG)
    forbidden = {t.lower() for t in cfg["forbiddenTags"]}
    f = Findings(report)
    for c in k8s.containers(args.props, args.resource_type, f, ("initContainers", "containers", "ephemeralContainers")):
        image = text(get(c.body, "image", at=c.at))
        if isinstance(image, Unknown):
            f.unknown(image)
            continue
        if image is None:
            f.violation(f"{c.label} has no image.")
            continue
        _, tag, digest = split_image(image)
        if digest is not None and _DIGEST.search(image):
            continue
        if cfg["requireDigest"]:
            f.violation(f"{c.label} image {image} is not pinned by digest (@sha256:...); this stack requires digests.")
        elif tag is None:
            f.violation(f"{c.label} image {image} has no tag, so it resolves to :latest.")
        elif tag.lower() in forbidden:
            f.violation(f"{c.label} image {image} uses the moving tag :{tag}.")
    f.done()


k8s_image_pinned = resource_policy("k8s-image-pinned", _image_pinned, IMAGE_CONFIG)

# ------------------------------------------------------------------ k8s-resources-set

RESOURCES_CONFIG: Schema = {
    "requireCpuLimit": {
        "type": "boolean", "default": False,
        "description": "Also require limits.cpu (off by default: CPU limits throttle tokenization and HTTP handling).",
    },
}

GPU_RESOURCE = "nvidia.com/gpu"


def _resources_set(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in k8s.WORKLOADS:
        return
    need_cpu_limit = bool(settings(args, RESOURCES_CONFIG)["requireCpuLimit"])
    f = Findings(report)
    for c in k8s.containers(args.props, args.resource_type, f):
        requests = k8s.string_map(c.body, "resources", "requests", f=f)
        limits = k8s.string_map(c.body, "resources", "limits", f=f)
        missing = [f"requests.{r}" for r in ("cpu", "memory") if r not in requests]
        missing += [f"limits.{r}" for r in ("memory", *(("cpu",) if need_cpu_limit else ())) if r not in limits]
        if missing:
            f.violation(f"{c.label} does not set resources {', '.join(missing)}.")
        gpu_req, gpu_lim = requests.get(GPU_RESOURCE), limits.get(GPU_RESOURCE)
        for v in (gpu_req, gpu_lim):
            if isinstance(v, Unknown):
                f.unknown(v)
        decidable = gpu_req is not None and not isinstance(gpu_req, Unknown) and not isinstance(gpu_lim, Unknown)
        if decidable and (gpu_lim is None or number(gpu_lim) != number(gpu_req)):
            f.violation(f"{c.label} requests {gpu_req} {GPU_RESOURCE} but limits it to {gpu_lim}; "
                        "they must be equal.")
    f.done()


k8s_resources_set = resource_policy("k8s-resources-set", _resources_set, RESOURCES_CONFIG)

# ------------------------------------------------------------------ k8s-no-privileged-host-access

HOST_CONFIG: Schema = {
    "exemptNamespaces": {
        "type": "array", "items": {"type": "string"}, "default": ["kube-system"],
        "description": "Namespaces whose node agents (e.g. the NVIDIA device plugin) may use host access.",
    },
}

# Pod Security Standards "baseline": capabilities a container may add.
BASELINE_CAPABILITIES = frozenset(
    {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE",
     "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
)


def _no_host_access(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type not in k8s.WORKLOADS:
        return
    exempt = set(settings(args, HOST_CONFIG)["exemptNamespaces"])
    ns = get(args.props, "metadata", "namespace")
    if (isinstance(ns, str) and ns in exempt) or (ns is None and k8s.default_namespace(args.provider) in exempt):
        return
    f = Findings(report)
    spec, at = k8s.pod_spec(args.props, args.resource_type)
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        v = flag(get(spec, field, at=at))
        if isinstance(v, Unknown):
            f.unknown(v)
        elif v is True:
            f.violation(f"The pod sets {field}: true.")
    for i, vol in enumerate(iter_known(items(spec, "volumes", at=at), f)):
        if get(vol, "hostPath") is not None:
            f.violation(f"volumes[{i}] ({get(vol, 'name')}) mounts a hostPath.")
    kinds = ("initContainers", "containers", "ephemeralContainers")
    for c in k8s.containers(args.props, args.resource_type, f, kinds):
        for field, bad in (("privileged", True), ("allowPrivilegeEscalation", True)):
            v = flag(get(c.body, "securityContext", field, at=c.at))
            if isinstance(v, Unknown):
                f.unknown(v)
            elif v is bad:
                f.violation(f"{c.label} sets securityContext.{field}: true.")
        added = items(c.body, "securityContext", "capabilities", "add", at=c.at)
        extra = sorted(str(a) for a in iter_known(added, f) if str(a).upper() not in BASELINE_CAPABILITIES)
        if extra:
            f.violation(f"{c.label} adds capabilities beyond the baseline set: {', '.join(extra)}.")
    f.done()


k8s_no_privileged_host_access = resource_policy("k8s-no-privileged-host-access", _no_host_access, HOST_CONFIG)

# ------------------------------------------------------------------ k8s-serving-probes

PROBES_CONFIG: Schema = {
    "requireStartupProbe": {
        "type": "boolean", "default": True,
        "description": "Require a startupProbe (model loads take minutes; liveness alone kills them).",
    },
}


def _serving_probes(args: ResourceValidationArgs, report: ReportViolation) -> None:
    serving = k8s.is_serving(args.props, args.resource_type)
    f = Findings(report)
    if isinstance(serving, Unknown):
        f.unknown(serving)
        f.done()
    if not serving:
        return
    wanted = ["readinessProbe", "livenessProbe"]
    if settings(args, PROBES_CONFIG)["requireStartupProbe"]:
        wanted.append("startupProbe")
    for c in k8s.containers(args.props, args.resource_type, f, ("containers",)):
        missing = [p for p in wanted if get(c.body, p) is None]
        if missing:
            f.violation(f"Serving {c.label} has no {', '.join(missing)}.")
    f.done()


k8s_serving_probes = resource_policy("k8s-serving-probes", _serving_probes, PROBES_CONFIG)

# ------------------------------------------------------------------ k8s-no-inline-secrets

TOKEN_PATTERNS: dict[str, re.Pattern[str]] = {
    "a Hugging Face token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "an OpenAI-style API key": re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"),
    "an AWS access key id": re.compile(r"\b(?:AKIA|ASIA)[A-Z0-9]{16}\b"),
    "a GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "a private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
}
SECRET_NAME = re.compile(r"(TOKEN|SECRET|PASSWORD|PASSWD|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIALS?)", re.I)
# Variables that hold a *pointer* to a credential, not the credential itself.
POINTER_SUFFIX = re.compile(r"_(FILE|PATH|DIR|URL|URI|NAME|ARN|REF)$", re.I)
# Kubernetes expands $(VAR) from the container's env: a reference, not a literal.
ENV_REFERENCE = re.compile(r"^\$\([A-Za-z_][A-Za-z0-9_]*\)$")
SECRET_FLAGS = ("--api-key", "--hf-token", "--token")


def token_kind(value: str) -> str | None:
    for kind, pattern in TOKEN_PATTERNS.items():
        if pattern.search(value):
            return kind
    return None


def _check_args(c: k8s.Container, f: Findings) -> None:
    for field in ("command", "args"):
        words = list(iter_known(items(c.body, field, at=c.at), f))
        for i, word in enumerate(words):
            if not isinstance(word, str):
                continue
            kind = token_kind(word)
            if kind:
                f.violation(f"{c.label} {field}[{i}] contains {kind} literal.")
                continue
            flag_name, eq, value = word.partition("=")
            if flag_name in SECRET_FLAGS:
                literal = value if eq else (words[i + 1] if i + 1 < len(words) else None)
                if isinstance(literal, str) and literal and not ENV_REFERENCE.match(literal):
                    f.violation(f"{c.label} passes {flag_name} a literal; "
                                f"use {flag_name} $(ENV_VAR) with the variable from a secretKeyRef.")


def _check_env(c: k8s.Container, f: Findings) -> None:
    for i, env in enumerate(iter_known(items(c.body, "env", at=c.at), f)):
        name = get(env, "name")
        raw = get(env, "value", at=(*c.at, "env", i), unwrap_secrets=False)
        if isinstance(raw, Unknown):
            f.unknown(raw)
            continue
        if isinstance(raw, Secret):
            f.violation(f"{c.label} env {name} inlines a Pulumi secret; put it in a Secret and use secretKeyRef.")
            continue
        if not isinstance(raw, str) or not raw:
            continue
        kind = token_kind(raw)
        if kind:
            f.violation(f"{c.label} env {name} holds {kind} literal.")
        elif (isinstance(name, str) and SECRET_NAME.search(name) and not POINTER_SUFFIX.search(name)
              and not ENV_REFERENCE.match(raw)):
            f.violation(f"{c.label} env {name} is set to a literal value; "
                        "reference a Secret with valueFrom.secretKeyRef.")


def _no_inline_secrets(args: ResourceValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    if args.resource_type in k8s.WORKLOADS:
        kinds = ("initContainers", "containers", "ephemeralContainers")
        for c in k8s.containers(args.props, args.resource_type, f, kinds):
            _check_env(c, f)
            _check_args(c, f)
    elif args.resource_type == k8s.CONFIG_MAP:
        for key, value in k8s.string_map(args.props, "data", f=f).items():
            if isinstance(value, Unknown):
                f.unknown(value)
            elif isinstance(value, str) and (kind := token_kind(value)):
                f.violation(f"ConfigMap key {key!r} holds {kind}; ConfigMaps are not secret. Use a Secret.")
    f.done()


k8s_no_inline_secrets = resource_policy("k8s-no-inline-secrets", _no_inline_secrets)

# ------------------------------------------------------------------ k8s-networkpolicy-per-namespace


def _governs_ingress(np: PolicyResource, f: Findings) -> bool:
    types = items(np.props, "spec", "policyTypes")
    if isinstance(types, Unknown):
        f.unknown(types)
        return True
    return not types or "Ingress" in types  # unset policyTypes always includes Ingress


def _network_policies(args: StackValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    namespaces = k8s.namespace_names(args.resources)
    covered: set[str] = set()
    for np in args.resources:
        if np.resource_type != k8s.NETWORK_POLICY or not _governs_ingress(np, f):
            continue
        ns = k8s.namespace_of(np, namespaces)
        if isinstance(ns, Unknown):
            f.unknown(ns)
        else:
            covered.add(ns)
    for w in args.resources:
        serving = k8s.is_serving(w.props, w.resource_type)
        if isinstance(serving, Unknown):
            f.unknown(serving)
            continue
        if not serving:
            continue
        ns = k8s.namespace_of(w, namespaces)
        if isinstance(ns, Unknown):
            f.unknown(ns)
        elif ns not in covered:
            shown = ns.removeprefix("urn:")
            f.violation(f"Serving workload {w.name!r} runs in namespace {shown!r}, which has no NetworkPolicy.", w.urn)
    f.done()


k8s_networkpolicy_per_namespace = stack_policy("k8s-networkpolicy-per-namespace", _network_policies)

# ------------------------------------------------------------------ k8s-pdb-for-multi-replica

_MULTI_REPLICA = (k8s.DEPLOYMENT, k8s.STATEFUL_SET)


def selector_matches(selector: Any, labels: dict[str, Any]) -> bool:
    """Kubernetes label-selector semantics for matchLabels and matchExpressions; an empty selector matches all.

    A malformed selector (which the API server would reject) matches nothing.
    """
    if not isinstance(selector, dict):
        return False
    match_labels = selector.get("matchLabels") or {}
    expressions = selector.get("matchExpressions") or []
    if not isinstance(match_labels, dict) or not isinstance(expressions, list):
        return False
    for k, v in match_labels.items():
        if labels.get(k) != v:
            return False
    for expr in expressions:
        if not isinstance(expr, dict) or not isinstance(expr.get("key"), str):
            return False
        key, op, values = expr["key"], expr.get("operator"), expr.get("values") or []
        values = values if isinstance(values, list) else []
        present = key in labels
        if (op == "In" and labels.get(key) not in values) or (op == "NotIn" and present and labels[key] in values):
            return False
        if (op == "Exists" and not present) or (op == "DoesNotExist" and present):
            return False
        if op not in ("In", "NotIn", "Exists", "DoesNotExist"):
            return False
    return True


def _pdb_blocks_eviction(pdb: PolicyResource, replicas: int) -> str | None:
    max_unavailable = get(pdb.props, "spec", "maxUnavailable")
    min_available = get(pdb.props, "spec", "minAvailable")
    if (isinstance(max_unavailable, str) and max_unavailable.strip() == "0%") or number(max_unavailable) == 0:
        return "maxUnavailable is 0"
    if isinstance(min_available, str) and min_available.strip() == "100%":
        return "minAvailable is 100%"
    n = number(min_available)
    if isinstance(n, float) and n >= replicas:
        return f"minAvailable {int(n)} >= {replicas} replicas"
    return None


def _pdbs(args: StackValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    namespaces = k8s.namespace_names(args.resources)
    pdbs: list[tuple[str, Any, PolicyResource]] = []
    undecided = False  # a PDB whose namespace or selector is not known yet might match anything
    for p in args.resources:
        if p.resource_type != k8s.PDB:
            continue
        ns = k8s.namespace_of(p, namespaces)
        selector = plain(get(p.props, "spec", "selector"), ("spec", "selector"))
        missing = ns if isinstance(ns, Unknown) else first_unknown(selector)
        if missing is not None:
            f.unknown(missing)
            undecided = True
            continue
        pdbs.append((str(ns), selector, p))
    for w in args.resources:
        if w.resource_type not in _MULTI_REPLICA:
            continue
        replicas = number(get(w.props, "spec", "replicas"))
        if isinstance(replicas, Unknown):
            f.unknown(replicas)
            continue
        count = 1 if replicas is None else int(replicas)
        if count < 2:
            continue
        ns = k8s.namespace_of(w, namespaces)
        labels = plain(get(w.props, "spec", "template", "metadata", "labels"), ("spec", "template", "metadata"))
        missing = ns if isinstance(ns, Unknown) else first_unknown(labels)
        if missing is not None:
            f.unknown(missing)
            continue
        pod_labels = labels if isinstance(labels, dict) else {}
        matching = [p for pns, sel, p in pdbs if pns == ns and selector_matches(sel, pod_labels)]
        if not matching and not undecided:
            f.violation(f"{w.name!r} runs {count} replicas but no PodDisruptionBudget selects its pods.", w.urn)
        for p in matching:
            why = _pdb_blocks_eviction(p, count)
            if why:
                f.violation(f"PodDisruptionBudget {p.name!r} for {w.name!r} blocks every eviction ({why}); "
                            "node upgrades would hang.", p.urn)
    f.done()


k8s_pdb_for_multi_replica = stack_policy("k8s-pdb-for-multi-replica", _pdbs)

POLICIES: list[AnyPolicy] = [
    k8s_image_pinned,
    k8s_resources_set,
    k8s_no_privileged_host_access,
    k8s_serving_probes,
    k8s_no_inline_secrets,
    k8s_networkpolicy_per_namespace,
    k8s_pdb_for_multi_replica,
]
