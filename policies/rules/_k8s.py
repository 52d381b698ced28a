"""Kubernetes type tokens (pulumi-kubernetes 4.x) and helpers for workloads and servekit labels."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import PolicyProviderResource, PolicyResource

from ._props import Findings, Key, Unknown, entries, get, items, iter_known, text

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STATEFUL_SET = "kubernetes:apps/v1:StatefulSet"
DAEMON_SET = "kubernetes:apps/v1:DaemonSet"
REPLICA_SET = "kubernetes:apps/v1:ReplicaSet"
JOB = "kubernetes:batch/v1:Job"
CRON_JOB = "kubernetes:batch/v1:CronJob"
POD = "kubernetes:core/v1:Pod"
NAMESPACE = "kubernetes:core/v1:Namespace"
SECRET = "kubernetes:core/v1:Secret"
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
NETWORK_POLICY = "kubernetes:networking.k8s.io/v1:NetworkPolicy"
PDB = "kubernetes:policy/v1:PodDisruptionBudget"

# Where each workload keeps its pod template.
_TEMPLATE: dict[str, tuple[str, ...]] = {
    POD: (),
    DEPLOYMENT: ("spec", "template"),
    STATEFUL_SET: ("spec", "template"),
    DAEMON_SET: ("spec", "template"),
    REPLICA_SET: ("spec", "template"),
    JOB: ("spec", "template"),
    CRON_JOB: ("spec", "jobTemplate", "spec", "template"),
}
WORKLOADS = frozenset(_TEMPLATE)

PREFIX = "servekit.io/"
ROLE = f"{PREFIX}role"
MODEL = f"{PREFIX}model"


def pod_template(props: Any, resource_type: str) -> tuple[Any, tuple[Key, ...]]:
    """The pod template (for a Pod: the object itself) and its path."""
    path = _TEMPLATE[resource_type]
    return (get(props, *path) if path else props), path


def pod_spec(props: Any, resource_type: str) -> tuple[Any, tuple[Key, ...]]:
    template, path = pod_template(props, resource_type)
    return get(template, "spec", at=path), (*path, "spec")


@dataclass(frozen=True)
class Container:
    kind: str  # containers | initContainers | ephemeralContainers
    index: int
    body: Any
    at: tuple[Key, ...]

    @property
    def label(self) -> str:
        name = get(self.body, "name")
        return f"{self.kind}[{self.index}]" + (f" ({name})" if isinstance(name, str) else "")


def containers(
    props: Any, resource_type: str, f: Findings, kinds: tuple[str, ...] = ("initContainers", "containers")
) -> Iterator[Container]:
    spec, at = pod_spec(props, resource_type)
    if isinstance(spec, Unknown):
        f.unknown(spec)
        return
    for kind in kinds:
        for i, body in enumerate(iter_known(items(spec, kind, at=at), f)):
            yield Container(kind, i, body, (*at, kind, i))


def servekit_value(props: Any, resource_type: str, key: str) -> Any:
    """A servekit.io/* fact from the object's labels or annotations, else its pod template's."""
    template, at = pod_template(props, resource_type) if resource_type in _TEMPLATE else (None, ())
    for source, base in ((props, ()), (template, at)):
        for field in ("labels", "annotations"):
            value = get(source, "metadata", field, key, at=base)
            if value is not None:
                return value
    return None


def is_serving(props: Any, resource_type: str) -> bool | Unknown:
    """A model-serving workload: servekit.io/role=serving, or any workload naming a servekit.io/model."""
    if resource_type not in WORKLOADS:
        return False
    role = servekit_value(props, resource_type, ROLE)
    if isinstance(role, Unknown):
        return role
    if role == "serving":
        return True
    if role is not None:
        return False  # e.g. the sla-gate Job
    return servekit_value(props, resource_type, MODEL) is not None


def default_namespace(provider: PolicyProviderResource | None) -> str:
    ns = None if provider is None else text(get(provider.props, "namespace"))
    return ns if isinstance(ns, str) else "default"


def namespace_of(res: PolicyResource, namespaces: Mapping[str, PolicyResource]) -> str | Unknown:
    """The object's namespace: a literal, else the Namespace resource its metadata depends on.

    When the namespace name is computed (an auto-named Namespace at preview), the Namespace's URN
    stands in for it, so objects that share a computed namespace still compare equal.
    """
    ns = get(res.props, "metadata", "namespace")
    if isinstance(ns, str) and ns:
        return ns
    if ns is None:
        return default_namespace(res.provider)
    deps = [d for d in res.property_dependencies.get("metadata", []) if d.urn in namespaces]
    if len(deps) == 1:
        name = get(deps[0].props, "metadata", "name")
        return name if isinstance(name, str) and name else f"urn:{deps[0].urn}"
    return ns


def namespace_names(resources: list[PolicyResource]) -> dict[str, PolicyResource]:
    return {r.urn: r for r in resources if r.resource_type == NAMESPACE}


def string_map(obj: Any, *path: Key, f: Findings) -> dict[str, Any]:
    value = entries(obj, *path)
    if isinstance(value, Unknown):
        f.unknown(value)
        return {}
    return value
