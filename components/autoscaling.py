"""Queue-depth autoscaling: KEDA, installed once per cluster, and one ScaledObject per model.

Why KEDA and not an HPA on CPU: a vLLM replica's CPU says nothing about load; the signal that
predicts an SLA miss is requests waiting for a batch slot (``vllm:num_requests_waiting``), which
lives in Prometheus. KEDA's Prometheus scaler turns that query into an external metric for the
HPA it manages, bounded by the model's ``autoscaling.minReplicas``/``maxReplicas``.

KEDA is a ``helm.v3.Release`` (a custom resource, so it works in the same program that creates the
cluster; the v4 ``Chart`` component failed there, pulumi-notes.md §6), pinned to chart
``KEDA_CHART_VERSION``. The ScaledObject schema used by the offline checks is that chart's CRD,
vendored in servekit/data/crd-keda-scaledobject-v1alpha1.json (source URL and commit inside).

Scale to zero is not offered: a cold vLLM start is minutes (weights + CUDA graphs), far beyond any
request timeout, so ``minReplicas`` must be at least 1 when autoscaling (the spec allows 0 only for
clusters that accept that wait; it is passed through as given).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.image_mirror import ImageMirror

KEDA_CHART = "keda"
KEDA_CHART_VERSION = "2.16.1"  # appVersion 2.16.1
KEDA_REPO = "https://kedacore.github.io/charts"
KEDA_NAMESPACE = "keda"
KEDA_IMAGES = {
    "keda": f"ghcr.io/kedacore/keda:{KEDA_CHART_VERSION}",
    "metricsApiServer": f"ghcr.io/kedacore/keda-metrics-apiserver:{KEDA_CHART_VERSION}",
    "webhooks": f"ghcr.io/kedacore/keda-admission-webhooks:{KEDA_CHART_VERSION}",
}
WAITING_METRIC = "vllm:num_requests_waiting"


@dataclass(frozen=True)
class KedaArgs:
    mirror: ImageMirror | None = None  # egress none: pull KEDA's images through ECR
    system_node_selector: dict[str, str] | None = None  # keep KEDA off the GPU nodes


class Keda(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KedaArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:autoscaling:Keda", name, {}, opts)
        ns = k8s.core.v1.Namespace(
            f"{name}-ns",
            # warn/audit, not enforce: the chart's own securityContext defaults decide, and an
            # enforced profile that rejected one of its pods would roll the whole release back.
            metadata=k8s.meta.v1.ObjectMetaArgs(name=KEDA_NAMESPACE, labels={
                "pod-security.kubernetes.io/warn": "restricted", "pod-security.kubernetes.io/audit": "restricted",
                "app.kubernetes.io/part-of": "servekit"}),
            opts=pulumi.ResourceOptions(parent=self),
        )
        values: dict[str, object] = {
            "image": _image_values(args.mirror),
            "resources": {
                # KEDA's chart ships no defaults; give every container requests and limits.
                "operator": {"requests": {"cpu": "100m", "memory": "128Mi"},
                             "limits": {"cpu": "1", "memory": "512Mi"}},
                "metricServer": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                 "limits": {"cpu": "1", "memory": "512Mi"}},
                "webhooks": {"requests": {"cpu": "50m", "memory": "64Mi"},
                             "limits": {"cpu": "500m", "memory": "256Mi"}},
            },
        }
        if args.system_node_selector:
            values["nodeSelector"] = args.system_node_selector
        self.release = k8s.helm.v3.Release(
            f"{name}-release",
            name="keda",
            chart=KEDA_CHART,
            version=KEDA_CHART_VERSION,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KEDA_REPO),
            namespace=ns.metadata.name,
            values=values,
            atomic=True,
            timeout=600,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.register_outputs({"releaseStatus": self.release.status})


def _image_values(mirror: ImageMirror | None) -> dict[str, object]:
    out: dict[str, object] = {}
    for key, image in KEDA_IMAGES.items():
        repo, tag = image.rsplit(":", 1)
        host, path = repo.split("/", 1)
        if mirror is None:
            out[key] = {"registry": host, "repository": path, "tag": tag}
        else:
            # <acct>.dkr.ecr.<region>.amazonaws.com/ghcr/kedacore/keda:<tag>
            ref = mirror.reference(image)
            out[key] = {
                "registry": ref.apply(lambda r: r.split("/", 1)[0]),
                "repository": ref.apply(lambda r: r.split("/", 1)[1].rsplit(":", 1)[0]),
                "tag": tag,
            }
    out["pullPolicy"] = "IfNotPresent"
    return out


def scaled_object_spec(
    *,
    deployment_name: str,
    namespace: str,
    model_name: str,
    min_replicas: int,
    max_replicas: int,
    waiting_target: int,
    prometheus_address: str,
) -> dict[str, object]:
    """The ScaledObject ``spec``: average waiting requests per replica against the target.

    ``sum(waiting)`` over the model's pods with metricType AverageValue makes the HPA compute
    ceil(sum / target) replicas. Scale-up reacts in one polling interval; scale-down waits 10 min
    (a replica costs minutes to bring back, so do not drop one on a short lull).
    """
    query = f'sum({WAITING_METRIC}{{namespace="{namespace}",model_name="{model_name}"}})'
    return {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": deployment_name},
        "minReplicaCount": min_replicas,
        "maxReplicaCount": max_replicas,
        "pollingInterval": 15,
        "cooldownPeriod": 600,
        "advanced": {
            "horizontalPodAutoscalerConfig": {
                "behavior": {
                    "scaleUp": {"stabilizationWindowSeconds": 0,
                                "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
                    "scaleDown": {"stabilizationWindowSeconds": 600,
                                  "policies": [{"type": "Pods", "value": 1, "periodSeconds": 300}]},
                },
            },
        },
        "triggers": [{
            "type": "prometheus",
            "name": "waiting-requests",
            "metricType": "AverageValue",
            "metadata": {
                "serverAddress": prometheus_address,
                "query": query,
                "threshold": str(waiting_target),
                # Missing series (no pod up yet) is "0 waiting", not an error that freezes scaling.
                "ignoreNullValues": "true",
            },
        }],
    }

