"""Monitoring: CloudWatch and Prometheus wired per stack, SLA alarms generated from each model's SLA.

An SLA breach must reach a person as an alarm, not as a user's complaint. Everything ends in one
KMS-encrypted SNS topic (``servekit-<stack>-alerts``) with the stack's ``alertEmails`` subscribed.

What gets created (docs/monitoring.md has the same as a table)
---------------------------------------------------------------

Always: a customer KMS key (rotation on) for the topic, the log groups and the AMP workspace; the SNS
topic, its policy (only this account's CloudWatch alarms and AMP workspace may publish) and one
e-mail subscription per address (SNS mails a confirmation link; until it is clicked the
subscription stays pending and nothing is delivered to that address).

``cloudwatch: true`` (default):

- the ``amazon-cloudwatch-observability`` EKS add-on (Container Insights with enhanced observability
  and NVIDIA GPU metrics; Fluent Bit container logs), pinned, with its workload identity: an EKS Pod
  Identity association of service account ``amazon-cloudwatch/cloudwatch-agent`` to a role holding
  ``CloudWatchAgentServerPolicy``;
- its log groups created first, KMS-encrypted with the stack's retention, so the agent and Fluent
  Bit never auto-create unencrypted, never-expiring ones: ``/aws/containerinsights/<cluster>/``
  ``application``, ``dataplane``, ``host``, ``performance``;
- **vLLM's Prometheus metrics into CloudWatch.** The CloudWatch agent's Prometheus-to-EMF path
  drops histogram metrics ("The CloudWatch agent supports the counter, gauge, and summary metric
  types", CloudWatch user guide, Prometheus metric type conversion), and vLLM's latencies are
  histograms, so that path could never alarm on a p95. Instead an AWS-managed collector
  (``aws.amp.Scraper``) scrapes the vLLM pods and writes to CloudWatch's Prometheus-compatible store
  (``destination.cloudwatch``, dataset ``default``), histograms included, and the alarms are
  **PromQL alarms** (``MetricAlarm.evaluation_criteria.promql_criteria``, pulumi-aws 7.51) built with
  the same PromQL builders as servekit/alert_rules.py: per model p95 end-to-end latency above the SLA,
  p95 TTFT above the SLA (when the SLA states one), error ratio above ``maxErrorRate``, a full batch
  waiting, and vLLM metrics absent. (U) CloudWatch's PromQL dialect is new; that it evaluates
  ``histogram_quantile`` over ``vllm:*_bucket`` series exactly like Prometheus was not verified here.
- GPU and cluster health alarms on Container Insights metrics: GPU memory near full and GPUs idle for
  hours (``node_gpu_memory_utilization``, ``node_gpu_utilization`` — (U) names from the enhanced
  observability docs, not checked against a live account), failed nodes (``cluster_failed_node_count``)
  and, per model namespace, restarted vLLM containers (``pod_number_of_container_restarts`` through a
  Metrics Insights query);
- a CloudWatch dashboard: alarm states per model and stack, GPU utilization and memory, failed nodes.

``prometheus``:

- ``in-cluster``: namespace ``monitoring`` (the namespace vLLM's NetworkPolicy admits and KEDA's
  default address points at), a gp3 encrypted StorageClass, kube-prometheus-stack (pinned
  ``helm.v3.Release``) with the stack's retention and volume size, Alertmanager routing to the SNS
  topic (SigV4, credentials from a Pod Identity role that may only publish to that topic), Grafana
  with its dashboard sidecar, and, rendered by the same release from its values (so they are
  created after the chart's CRDs in one Helm transaction; a Pulumi ``CustomResource`` of a kind
  whose CRD the release installs cannot even be previewed on a new cluster): one PrometheusRule per
  rule group of servekit/alert_rules.py (``additionalPrometheusRulesMap``), a PodMonitor for the
  vLLM pods and a ServiceMonitor for the DCGM exporter (``honorLabels: true``: dcgm-exporter labels
  each GPU series with the ``namespace``/``pod`` using the GPU, and the GPU rules read that
  ``namespace``; without honorLabels Prometheus would rename them ``exported_namespace``). One
  Grafana dashboard ConfigMap per model (label ``grafana_dashboard: "1"``) for the sidecar.
- ``amp``: an AMP workspace (KMS, logging to an encrypted log group, retention from the stack), one
  rule-group namespace per rule group (the same ``rule_file`` text ``servekit rules`` writes), an
  alert manager definition routing to the SNS topic, and a managed scraper for vLLM, the DCGM
  exporter and kube-state-metrics (installed here: the Kubernetes rules need it). With egress none
  an ``aps-workspaces`` interface endpoint is added (the collector writes through the VPC).
- ``none``: no Prometheus resources at all (no namespace, exporter, CRs, workspace or scraper).

The DCGM exporter (pinned ``helm.v3.Release``, tolerating the ``nvidia.com/gpu`` taint, only on GPU
nodes) comes with either Prometheus mode. Its image lives on nvcr.io, which an ECR pull-through
cache cannot mirror, so with ``egress: none`` it is left out with a warning (CloudWatch still has the
GPUs through Container Insights). It runs with the default counters only: the profiling (DCP)
fields allow one reader per GPU, and the Container Insights add-on runs its own DCGM exporter.

Network trade-off of the managed collectors: they scrape from ENIs in the node subnets, which vLLM's
default-deny NetworkPolicy does not admit, so each model namespace gets ``allow-managed-scraper``
(TCP 8000 from the node subnets). The VPC CNI's policy agent cannot tell a collector ENI from a pod
address in those subnets, so this also admits other pods of the cluster to port 8000. An in-cluster
scrape (``monitoring`` namespace) needs no such opening; turn ``cloudwatch`` off and use
``prometheus: in-cluster`` where that matters more than CloudWatch alarms.

Duplicates, on purpose: with a Prometheus and CloudWatch both on, an SLA breach is reported by two
independent evaluators (subjects ``[FIRING] Servekit...`` from Alertmanager, ``ALARM: "servekit-..."``
from CloudWatch); either keeps working when the other's pipeline is down.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s
import yaml

from components._common import assume_role_policy, with_tags
from components.cluster import SYSTEM_NODE_SELECTOR
from components.image_mirror import mirrored_reference
from servekit.alert_rules import (
    E2E_LATENCY,
    MODEL_LABEL,
    REQUESTS_RUNNING,
    REQUESTS_WAITING,
    TTFT,
    error_ratio_expr,
    gauge_max_expr,
    quantile_expr,
    rule_file,
    rule_groups,
)
from servekit.dashboards import dashboard_json, dashboards
from servekit.engine_args import VLLM_PORT
from servekit.spec import DeploymentSpec, Egress, PrometheusMode

if TYPE_CHECKING:
    from components.platform import PlatformContext

# --------------------------------------------------------------------------- pinned versions

# EKS add-on version: the reference names v6.0.1-eksbuild.1 (sizing-and-cost-facts.md §2); (U) for
# every cluster version until `aws eks describe-addon-versions --addon-name
# amazon-cloudwatch-observability --kubernetes-version <v>` confirms it.
CLOUDWATCH_ADDON = "amazon-cloudwatch-observability"
CLOUDWATCH_ADDON_VERSIONS = {"1.34": "v6.0.1-eksbuild.1", "1.35": "v6.0.1-eksbuild.1", "1.36": "v6.0.1-eksbuild.1"}
CLOUDWATCH_NAMESPACE = "amazon-cloudwatch"
CLOUDWATCH_AGENT_SA = "cloudwatch-agent"  # the add-on's service account (AWS docs, Pod Identity setup)
CONTAINER_INSIGHTS_LOG_GROUPS = ("application", "dataplane", "host", "performance")


@dataclass(frozen=True)
class Chart:
    name: str
    version: str
    repo: str


# kube-prometheus-stack 67.8.0 = prometheus-operator v0.79.2, Prometheus v3.1, Grafana chart 8.8
# (Chart.yaml of prometheus-community/helm-charts at that version).
KUBE_PROMETHEUS_STACK = Chart("kube-prometheus-stack", "67.8.0", "https://prometheus-community.github.io/helm-charts")
KUBE_STATE_METRICS = Chart("kube-state-metrics", "5.28.0", "https://prometheus-community.github.io/helm-charts")
KUBE_STATE_METRICS_IMAGE = "registry.k8s.io/kube-state-metrics/kube-state-metrics:v2.14.0"
# (U) chart/image pair as NVIDIA publishes them (chart version = the DCGM part of the image tag);
# confirm with `helm search repo dcgm-exporter --versions` before changing.
DCGM_EXPORTER = Chart("dcgm-exporter", "3.6.1", "https://nvidia.github.io/dcgm-exporter/helm-charts")
DCGM_EXPORTER_IMAGE = "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04"
DCGM_PORT = 9400

MONITORING_NAMESPACE = "monitoring"  # = ServingArgs.monitoring_namespace (vLLM admits it; KEDA's default address)
KPS_FULLNAME = "kps"
ALERTMANAGER_SA = "servekit-alertmanager"
STORAGE_CLASS = "servekit-monitoring-gp3"
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_NODE_LABEL = "servekit.io/gpu"
SCRAPE_INTERVAL = "30s"
APS_COLLECTOR_USER = "aps-collector-user"  # the Kubernetes user AMP's managed collector authenticates as

# CloudWatch alarm cadence.
PROMQL_EVALUATION_SECONDS = 60
RECOVERY_SECONDS = 300
ALARM_WINDOW = "5m"  # PromQL rate window, as the Prometheus rules use (RuleTuning.rate_window)
SLA_PENDING_SECONDS = 600  # = RuleTuning.sla_for
QUEUE_PENDING_SECONDS = 600  # = RuleTuning.queue_for
ABSENT_PENDING_SECONDS = 900  # = RuleTuning.metrics_absent_for
GPU_MEMORY_HEADROOM = 0.03  # = RuleTuning.gpu_memory_headroom
GPU_IDLE_PERCENT = 5.0  # = RuleTuning.gpu_idle_util_percent
GPU_IDLE_HOURS = 6


# --------------------------------------------------------------------------- pure planning


@dataclass(frozen=True)
class PromqlAlarm:
    """A CloudWatch PromQL alarm: ``query`` returns the breaching series (one contributor each)."""

    name: str
    model: str
    query: str
    pending_seconds: int
    description: str


def _fmt(x: float) -> str:
    return repr(round(float(x), 12))


def promql_alarms(spec: DeploymentSpec) -> list[PromqlAlarm]:
    """Per model: p95 latency (and TTFT) above the SLA, error ratio above the budget, full queue, no metrics."""
    out: list[PromqlAlarm] = []
    for md in spec.models:
        m, sla = md.name, md.sla
        prefix = f"servekit-{spec.stack}-{m}"
        out.append(PromqlAlarm(
            f"{prefix}-p95-latency", m,
            f"{quantile_expr(E2E_LATENCY, m, 0.95, ALARM_WINDOW)} > {_fmt(sla.p95_e2e_seconds)}",
            SLA_PENDING_SECONDS,
            f"{m}: p95 end-to-end latency over {ALARM_WINDOW} above the SLA of {sla.p95_e2e_seconds:g} s "
            f"for {SLA_PENDING_SECONDS // 60} min (SLA batch {sla.concurrency_per_replica} per replica). "
            "Runbook: docs/runbooks.md#servekite2elatencyp95abovesla"))
        if sla.p95_ttft_seconds is not None:
            out.append(PromqlAlarm(
                f"{prefix}-p95-ttft", m,
                f"{quantile_expr(TTFT, m, 0.95, ALARM_WINDOW)} > {_fmt(sla.p95_ttft_seconds)}",
                SLA_PENDING_SECONDS,
                f"{m}: p95 time to first token above the SLA of {sla.p95_ttft_seconds:g} s for "
                f"{SLA_PENDING_SECONDS // 60} min. Runbook: docs/runbooks.md#servekitttftp95abovesla"))
        out.append(PromqlAlarm(
            f"{prefix}-error-rate", m,
            f"{error_ratio_expr(m, ALARM_WINDOW)} > {_fmt(sla.max_error_rate)}",
            SLA_PENDING_SECONDS,
            f"{m}: failed or rejected requests above the SLA's {sla.max_error_rate * 100:g} % for "
            f"{SLA_PENDING_SECONDS // 60} min. Runbook: docs/runbooks.md#servekiterrorrateabovesla"))
        out.append(PromqlAlarm(
            f"{prefix}-queue", m,
            f"{gauge_max_expr(REQUESTS_WAITING, m)} >= {sla.concurrency_per_replica}",
            QUEUE_PENDING_SECONDS,
            f"{m}: a replica has had a full SLA batch ({sla.concurrency_per_replica}) waiting for "
            f"{QUEUE_PENDING_SECONDS // 60} min. Runbook: docs/runbooks.md#servekitrequestqueuebacklog"))
        min_replicas = md.autoscaling.min_replicas if md.autoscaling else md.replicas
        if min_replicas > 0:
            out.append(PromqlAlarm(
                f"{prefix}-metrics-absent", m,
                f'absent({REQUESTS_RUNNING}{{{MODEL_LABEL}="{m}"}})',
                ABSENT_PENDING_SECONDS,
                f"{m}: no vLLM metrics reached CloudWatch for {ABSENT_PENDING_SECONDS // 60} min (all replicas "
                "down, or the collector is broken). Runbook: docs/runbooks.md#servekitvllmmetricsabsent"))
    return out


@dataclass(frozen=True)
class MetricAlarmPlan:
    """A classic CloudWatch alarm on a Container Insights metric (or a Metrics Insights query)."""

    name: str
    description: str
    comparison: str
    threshold: float
    period: int
    evaluation_periods: int
    metric_name: str | None = None
    statistic: str | None = None
    query: str | None = None  # Metrics Insights SQL instead of metric_name/statistic
    treat_missing_data: str = "notBreaching"


def container_insights_alarms(spec: DeploymentSpec, cluster_name: str) -> list[MetricAlarmPlan]:
    """GPU memory, GPU idle, failed nodes (per stack) and vLLM container restarts (per model)."""
    prefix = f"servekit-{spec.stack}"
    mem_limit = min(max(md.gpu_memory_utilization for md in spec.models) + GPU_MEMORY_HEADROOM, 0.99)
    alarms = [
        MetricAlarmPlan(
            f"{prefix}-gpu-memory-high",
            f"A GPU's framebuffer use stayed above {mem_limit * 100:g} % (vLLM reserves at most "
            f"{max(md.gpu_memory_utilization for md in spec.models):g}) for 15 min: another process shares it. "
            "Runbook: docs/runbooks.md#servekitgpumemorynearlyfull",
            "GreaterThanThreshold", round(mem_limit * 100, 6), 300, 3,
            metric_name="node_gpu_memory_utilization", statistic="Maximum"),  # (U) metric name
        MetricAlarmPlan(
            f"{prefix}-gpu-idle",
            f"Some GPU node stayed below {GPU_IDLE_PERCENT:g} % utilization for {GPU_IDLE_HOURS} h: paid for, "
            "unused. Runbook: docs/runbooks.md#servekitgpuidle",
            "LessThanThreshold", GPU_IDLE_PERCENT, 3600, GPU_IDLE_HOURS,
            metric_name="node_gpu_utilization", statistic="Minimum"),  # (U) metric name
        MetricAlarmPlan(
            f"{prefix}-node-failures",
            "Container Insights counts failed nodes in the cluster for 5 min; their replicas are gone until "
            "they recover or are replaced. Runbook: docs/runbooks.md#servekitnodenotready",
            "GreaterThanThreshold", 0.0, 60, 5,
            metric_name="cluster_failed_node_count", statistic="Maximum"),
    ]
    for md in spec.models:
        alarms.append(MetricAlarmPlan(
            f"{prefix}-{md.name}-restarts",
            f"A running pod of {md.name} has restarted containers (Container Insights' count since the pod "
            "started, so the alarm stays until the pod is replaced). "
            "Runbook: docs/runbooks.md#servekitvllmpodrestarted",
            "GreaterThanThreshold", 0.0, 300, 1,
            query=(f'SELECT MAX(pod_number_of_container_restarts) FROM SCHEMA("ContainerInsights", ClusterName, '
                   f"Namespace, PodName) WHERE ClusterName = '{cluster_name}' AND Namespace = '{md.name}'")))
    return alarms


def alertmanager_route(topic_arn: str, region: str, stack: str) -> dict[str, Any]:
    """Alertmanager configuration (route, receiver, inhibitions): everything to the SNS topic."""
    return {
        "route": {
            "receiver": "sns",
            "group_by": ["alertname", MODEL_LABEL, "severity"],
            "group_wait": "30s",
            "group_interval": "5m",
            "repeat_interval": "4h",
            "routes": [{"matchers": ['severity="critical"'], "receiver": "sns", "repeat_interval": "1h"}],
        },
        # A critical alert silences the warning of the same alert and model (burn-rate tiers).
        "inhibit_rules": [{"source_matchers": ['severity="critical"'], "target_matchers": ['severity="warning"'],
                           "equal": ["alertname", MODEL_LABEL]}],
        "receivers": [{
            "name": "sns",
            "sns_configs": [{
                "topic_arn": topic_arn,
                "sigv4": {"region": region},
                "subject": f"[{{{{ .Status | toUpper }}}}] {{{{ .CommonLabels.alertname }}}} ({stack})",
                "attributes": {"stack": stack, "severity": "{{ .CommonLabels.severity }}"},
            }],
        }],
    }


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as literal blocks (``alertmanager_config: |``, as AMP's examples write it)."""


_BlockDumper.add_representer(str, lambda d, s: d.represent_scalar(
    "tag:yaml.org,2002:str", s, style="|" if "\n" in s else None))


def amp_alertmanager_definition(topic_arn: str, region: str, stack: str) -> str:
    """AMP's alert manager definition document: ``alertmanager_config: |`` holding the YAML."""
    inner = yaml.safe_dump(alertmanager_route(topic_arn, region, stack), sort_keys=False, width=100_000)
    return yaml.dump({"alertmanager_config": inner}, Dumper=_BlockDumper, sort_keys=False, width=100_000)


def _keep(label: str, regex: str) -> dict[str, Any]:
    return {"source_labels": [label], "regex": regex, "action": "keep"}


def _target_labels() -> list[dict[str, Any]]:
    return [
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
    ]


def scrape_configuration(spec: DeploymentSpec, *, vllm_only: bool, dcgm: bool) -> str:
    """Prometheus scrape configuration for an AWS-managed collector.

    ``vllm_only`` (the CloudWatch collector): vLLM pods only, and only ``vllm:`` series. Otherwise
    (the AMP collector) also the DCGM exporter and kube-state-metrics, both with ``honor_labels``
    (they label series with the namespace/pod they describe, which the rules read).
    """
    models = [md.name for md in spec.models]
    vllm: dict[str, Any] = {
        "job_name": "vllm",
        "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": models}}],
        "relabel_configs": [
            _keep("__meta_kubernetes_pod_label_app_kubernetes_io_name", "vllm"),
            _keep("__meta_kubernetes_pod_label_app_kubernetes_io_part_of", "servekit"),
            _keep("__meta_kubernetes_pod_container_port_name", "http"),
            *_target_labels(),
        ],
    }
    if vllm_only:
        vllm["metric_relabel_configs"] = [{"source_labels": ["__name__"], "regex": "vllm:.*", "action": "keep"}]
    jobs = [vllm]
    if not vllm_only:
        if dcgm:
            jobs.append({
                "job_name": "dcgm-exporter",
                "honor_labels": True,
                "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [MONITORING_NAMESPACE]}}],
                "relabel_configs": [
                    _keep("__meta_kubernetes_pod_label_app_kubernetes_io_name", "dcgm-exporter"),
                    _keep("__meta_kubernetes_pod_container_port_number", str(DCGM_PORT)),
                    {"source_labels": ["__meta_kubernetes_pod_node_name"], "target_label": "node"},
                ],
            })
        jobs.append({
            "job_name": "kube-state-metrics",
            "honor_labels": True,
            "kubernetes_sd_configs": [{"role": "pod", "namespaces": {"names": [MONITORING_NAMESPACE]}}],
            "relabel_configs": [
                _keep("__meta_kubernetes_pod_label_app_kubernetes_io_name", "kube-state-metrics"),
                _keep("__meta_kubernetes_pod_container_port_name", "http"),
            ],
        })
    doc = {"global": {"scrape_interval": SCRAPE_INTERVAL, "external_labels": {"stack": spec.stack}},
           "scrape_configs": jobs}
    return yaml.safe_dump(doc, sort_keys=False)


def collector_cluster_role() -> list[k8s.rbac.v1.PolicyRuleArgs]:
    """What AMP's managed collector needs in the cluster: discovery and /metrics (AMP user guide)."""
    read = ["describe", "get", "list", "watch"]
    rule = k8s.rbac.v1.PolicyRuleArgs
    return [
        rule(api_groups=[""], resources=["nodes", "nodes/proxy", "nodes/metrics", "services", "endpoints", "pods",
                                         "ingresses", "configmaps"], verbs=read),
        rule(api_groups=["extensions", "networking.k8s.io"], resources=["ingresses/status", "ingresses"], verbs=read),
        rule(api_groups=["metrics.eks.amazonaws.com"], resources=["kcm/metrics", "ksh/metrics"], verbs=["get"]),
        rule(non_resource_urls=["/metrics"], verbs=["get"]),
    ]


def kms_policy(account_id: str, partition: str, region: str, cluster_name: str, stack: str) -> str:
    """The monitoring key: the account administers it; CloudWatch Logs may use it for the monitoring log
    groups only; CloudWatch alarms and AMP may use it to publish to the encrypted topic."""
    root = f"arn:{partition}:iam::{account_id}:root"
    logs = f"arn:{partition}:logs:{region}:{account_id}:log-group:"
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*",
         "Resource": "*"},
        {"Sid": "CloudWatchLogsUse", "Effect": "Allow", "Principal": {"Service": f"logs.{region}.amazonaws.com"},
         "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
         "Resource": "*",
         "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": [
             f"{logs}/aws/containerinsights/{cluster_name}/*", f"{logs}/aws/vendedlogs/servekit/{stack}/*"]}}},
        {"Sid": "PublishToEncryptedTopic", "Effect": "Allow",
         "Principal": {"Service": ["cloudwatch.amazonaws.com", "aps.amazonaws.com"]},
         "Action": ["kms:Decrypt", "kms:GenerateDataKey*"], "Resource": "*",
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id}}},
    ]}, sort_keys=True)


def topic_policy(topic_arn: str, account_id: str, partition: str, region: str, stack: str,
                 workspace_arn: str | None) -> str:
    statements: list[dict[str, Any]] = [
        {"Sid": "AccountManages", "Effect": "Allow", "Principal": {"AWS": f"arn:{partition}:iam::{account_id}:root"},
         "Action": ["sns:GetTopicAttributes", "sns:SetTopicAttributes", "sns:Subscribe", "sns:ListSubscriptionsByTopic",
                    "sns:Publish"], "Resource": topic_arn},
        {"Sid": "StackAlarmsPublish", "Effect": "Allow", "Principal": {"Service": "cloudwatch.amazonaws.com"},
         "Action": "sns:Publish", "Resource": topic_arn,
         "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                       "ArnLike": {"aws:SourceArn": f"arn:{partition}:cloudwatch:{region}:{account_id}:alarm:"
                                                    f"servekit-{stack}-*"}}},
    ]
    if workspace_arn is not None:
        statements.append({
            "Sid": "AmpAlertManagerPublishes", "Effect": "Allow", "Principal": {"Service": "aps.amazonaws.com"},
            "Action": ["sns:Publish", "sns:GetTopicAttributes"], "Resource": topic_arn,
            "Condition": {"StringEquals": {"aws:SourceAccount": account_id},
                          "ArnEquals": {"aws:SourceArn": workspace_arn}}})
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def publish_policy(topic_arn: str, key_arn: str) -> str:
    """For Alertmanager's pod role: publish to this one topic (and use its key to do so)."""
    return json.dumps({"Version": "2012-10-17", "Statement": [
        {"Sid": "Publish", "Effect": "Allow", "Action": "sns:Publish", "Resource": topic_arn},
        {"Sid": "EncryptForTopic", "Effect": "Allow", "Action": ["kms:GenerateDataKey*", "kms:Decrypt"],
         "Resource": key_arn},
    ]}, sort_keys=True)


def addon_configuration() -> str:
    """The add-on's agent config (replaces its default): enhanced Container Insights with GPU metrics,
    no Application Signals; container logs on."""
    return json.dumps({
        "agent": {"config": {"logs": {"metrics_collected": {"kubernetes": {
            "enhanced_container_insights": True, "accelerated_compute_metrics": True}}}}},
        "containerLogs": {"enabled": True},
    }, sort_keys=True)


def labels(component: str) -> dict[str, str]:
    return {"app.kubernetes.io/part-of": "servekit", "app.kubernetes.io/component": component}


def pod_monitor_spec(spec: DeploymentSpec) -> dict[str, Any]:
    """vLLM pods of every model. No honorLabels: vLLM's series carry no target labels to keep, and the
    target's ``namespace``/``pod`` (KEDA's query reads ``namespace``) must win."""
    return {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "vllm", "app.kubernetes.io/part-of": "servekit"}},
        "namespaceSelector": {"matchNames": [md.name for md in spec.models]},
        "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": "15s", "honorLabels": False}],
    }


def dcgm_service_monitor_spec() -> dict[str, Any]:
    """The DCGM exporter: ``honorLabels: true`` keeps its per-GPU ``namespace``/``pod`` (pod mapping)."""
    return {
        "selector": {"matchLabels": {"app.kubernetes.io/name": "dcgm-exporter"}},
        "namespaceSelector": {"matchNames": [MONITORING_NAMESPACE]},
        "endpoints": [{"port": "metrics", "path": "/metrics", "interval": "15s", "honorLabels": True}],
    }


def _k8s_name(value: str) -> str:
    out = "".join(c if c.isalnum() or c in "-." else "-" for c in value.lower()).strip("-.")
    return out[:253]


def image_parts(image: str, registry: pulumi.Input[str] | None) -> dict[str, pulumi.Input[str]]:
    """``{registry, repository, tag}`` for a chart's image values, through the ECR mirror when given."""
    repo, tag = image.rsplit(":", 1)
    host, path = repo.split("/", 1)
    if registry is None:
        return {"registry": host, "repository": path, "tag": tag}
    ref = pulumi.Output.from_input(registry).apply(lambda r: mirrored_reference(image, r))
    return {"registry": ref.apply(lambda r: r.split("/", 1)[0]),
            "repository": ref.apply(lambda r: r.split("/", 1)[1].rsplit(":", 1)[0]),
            "tag": tag}


SMALL = {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}}


def rules_map(spec: DeploymentSpec) -> dict[str, dict[str, Any]]:
    """``additionalPrometheusRulesMap``: one PrometheusRule per rule group of servekit/alert_rules.py.

    Keys stay short so the rendered name (``kps-<key>``, cut at 63 characters by the chart) is unique."""
    out: dict[str, dict[str, Any]] = {}
    model_group = {f"servekit-{spec.stack}-model-{md.name}": md.name for md in spec.models}
    for group in rule_groups(spec):
        gname = group["name"]
        key = (f"servekit-model-{model_group[gname]}" if gname in model_group
               else "servekit-" + gname.removeprefix(f"servekit-{spec.stack}-"))
        out[key] = {"additionalLabels": labels("rules"), "groups": [group]}
    return out


def kube_prometheus_values(spec: DeploymentSpec, *, alertmanager_config: pulumi.Input[dict[str, Any]],
                           node_selector: Mapping[str, str], dcgm: bool) -> dict[str, Any]:
    """kube-prometheus-stack values: retention and volume from the stack, our rules only, SNS routing.

    The PrometheusRules, the vLLM PodMonitor and the DCGM ServiceMonitor are rendered by the chart from
    ``additionalPrometheusRulesMap`` / ``prometheus.additionalPodMonitors`` /
    ``prometheus.additionalServiceMonitors``: same objects, created after the chart's CRDs in one Helm
    transaction (a Pulumi CustomResource would race the CRD on first install)."""
    mon = spec.monitoring
    ns = dict(node_selector)
    monitors: dict[str, Any] = {
        "additionalPodMonitors": [{"name": "servekit-vllm", "additionalLabels": labels("prometheus"),
                                   **pod_monitor_spec(spec)}],
        "additionalServiceMonitors": ([{"name": "servekit-dcgm-exporter", "additionalLabels": labels("prometheus"),
                                        **dcgm_service_monitor_spec()}] if dcgm else []),
    }
    return {
        "additionalPrometheusRulesMap": rules_map(spec),
        "fullnameOverride": KPS_FULLNAME,
        "crds": {"enabled": True},
        # The chart's default rules include an always-firing Watchdog and many alerts without servekit
        # runbooks; alerting here is deliberate: servekit/alert_rules.py only.
        "defaultRules": {"create": False},
        # EKS runs the control plane; these targets cannot be scraped from the cluster.
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "alertmanager": {
            "enabled": True,
            "serviceAccount": {"create": True, "name": ALERTMANAGER_SA},
            "config": alertmanager_config,
            "alertmanagerSpec": {"nodeSelector": ns, "resources": SMALL},
        },
        "prometheus": {**monitors, "prometheusSpec": {
            "retention": f"{mon.retention_days}d",
            # Stop before the volume is full (TSDB needs headroom to compact).
            "retentionSize": f"{int(mon.storage_gib * 0.85)}GiB",
            "storageSpec": {"volumeClaimTemplate": {"spec": {
                "storageClassName": STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": f"{mon.storage_gib}Gi"}}}}},
            # Select every PodMonitor/ServiceMonitor/PrometheusRule, not only the chart's own.
            "podMonitorSelectorNilUsesHelmValues": False,
            "serviceMonitorSelectorNilUsesHelmValues": False,
            "ruleSelectorNilUsesHelmValues": False,
            "nodeSelector": ns,
            "resources": {"requests": {"cpu": "250m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}},
        }},
        "prometheusOperator": {"nodeSelector": ns, "resources": SMALL},
        "kube-state-metrics": {"nodeSelector": ns, "resources": SMALL},
        "grafana": {
            "enabled": True,
            "adminPassword": "",  # empty: the Grafana chart generates one into its Secret (never "prom-operator")
            "nodeSelector": ns,
            "resources": {"requests": {"cpu": "50m", "memory": "192Mi"}, "limits": {"memory": "512Mi"}},
            "sidecar": {"dashboards": {"enabled": True, "label": "grafana_dashboard", "labelValue": "1",
                                       "searchNamespace": MONITORING_NAMESPACE}},
        },
    }


def dcgm_values(registry: pulumi.Input[str] | None) -> dict[str, Any]:
    repo, tag = DCGM_EXPORTER_IMAGE.rsplit(":", 1)
    image: dict[str, Any] = {"repository": repo, "tag": tag, "pullPolicy": "IfNotPresent"}
    if registry is not None:  # never reached today (nvcr.io cannot be mirrored); kept for a future mirror
        ref = pulumi.Output.from_input(registry).apply(lambda r: mirrored_reference(DCGM_EXPORTER_IMAGE, r))
        image = {"repository": ref.apply(lambda r: r.rsplit(":", 1)[0]), "tag": tag, "pullPolicy": "IfNotPresent"}
    return {
        "image": image,
        "arguments": ["-f", "/etc/dcgm-exporter/default-counters.csv"],  # no DCP/profiling fields (docstring)
        "serviceMonitor": {"enabled": False},  # ours below, with honorLabels
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}],
        "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
            {"matchExpressions": [{"key": GPU_NODE_LABEL, "operator": "Exists"}]}]}}},
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "512Mi"}},
    }


# --------------------------------------------------------------------------- the component


@dataclass(frozen=True)
class MonitoringArgs:
    spec: DeploymentSpec
    cluster_name: str  # the plan's (known) cluster name: log group names and queries use it
    cluster_name_output: pulumi.Input[str]  # the EKS cluster's name output (dependency on the cluster)
    cluster_security_group_id: pulumi.Input[str]
    subnet_ids: Sequence[pulumi.Input[str]]  # private node subnets
    subnet_cidrs: Sequence[str]
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]
    log_retention_days: int
    tags: Mapping[str, str]
    vpc_id: pulumi.Input[str] | None = None
    endpoint_security_group_id: pulumi.Input[str] | None = None  # egress none: interface endpoints' SG
    mirror_registry: pulumi.Input[str] | None = None  # egress none: the ECR pull-through registry host
    system_node_selector: Mapping[str, str] = field(default_factory=dict)
    addon_depends_on: Sequence[pulumi.Resource] = ()  # pod identity agent, system nodes
    helm_depends_on: Sequence[pulumi.Resource] = ()  # system nodes, CoreDNS, EBS CSI
    # model -> its namespace, as components.vllm_service returned it (an Output: objects placed in it wait
    # for the Namespace); a model missing here falls back to its name, vllm_service's convention.
    model_namespaces: Mapping[str, pulumi.Input[str]] = field(default_factory=dict)


class Monitoring(pulumi.ComponentResource):
    """CloudWatch and Prometheus for one stack (module docstring)."""

    topic_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    promql_alarm_names: list[str]
    workspace_id: pulumi.Output[str] | None
    prometheus_address: str | None
    warnings: list[str]

    def __init__(self, name: str, args: MonitoringArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:monitoring:Monitoring", name, {}, opts)
        spec, mon = args.spec, args.spec.monitoring
        self._name, self._args = name, args
        self.warnings = []
        tags = dict(args.tags)
        region = spec.region
        child = pulumi.ResourceOptions(parent=self)
        mode = mon.prometheus
        retention = mon.log_retention_days or args.log_retention_days
        dcgm = mode is not PrometheusMode.NONE and spec.network.egress is not Egress.NONE
        if mode is not PrometheusMode.NONE and not dcgm:
            self._warn("network.egress is none: the DCGM exporter (nvcr.io, not mirrorable by ECR pull-through) "
                       "is left out, so the Prometheus GPU rules see no data; CloudWatch Container Insights still "
                       "reports the GPUs")
        if not mon.alert_emails:
            self._warn("monitoring.alertEmails is empty: alarms publish to the SNS topic but nobody is subscribed")

        # ---- key, topic, subscriptions
        key = aws.kms.Key(
            f"{name}-key", description=f"servekit {spec.stack}: alerts topic, monitoring logs, AMP workspace",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=pulumi.Output.all(args.account_id, args.partition).apply(
                lambda ap: kms_policy(ap[0], ap[1], region, args.cluster_name, spec.stack)),
            tags=with_tags(tags, Name=f"servekit-{spec.stack}-monitoring"), opts=child)
        aws.kms.Alias(f"{name}-key", name=f"alias/servekit-{spec.stack}-monitoring", target_key_id=key.key_id,
                      opts=child)
        self.kms_key_arn = key.arn
        topic = aws.sns.Topic(f"{name}-alerts", name=f"servekit-{spec.stack}-alerts",
                              display_name=f"servekit {spec.stack}", kms_master_key_id=key.arn, tags=tags, opts=child)
        self.topic_arn = topic.arn
        for address in mon.alert_emails:
            digest = hashlib.sha256(address.lower().encode()).hexdigest()[:8]
            aws.sns.TopicSubscription(f"{name}-email-{digest}", topic=topic.arn, protocol="email",
                                      endpoint=address, opts=child)

        # ---- Prometheus
        self.workspace_id = None
        self.prometheus_address = None
        workspace_arn: pulumi.Output[str] | None = None
        uses_collector = mode is PrometheusMode.AMP or mon.cloudwatch
        collector_rbac = self._collector_rbac() if uses_collector else []
        if mode is PrometheusMode.IN_CLUSTER:
            self._in_cluster(topic, key, dcgm)
        elif mode is PrometheusMode.AMP:
            workspace = self._amp(topic, key, dcgm, retention, collector_rbac)
            workspace_arn = workspace.arn
            self.workspace_id = workspace.id
        aws.sns.TopicPolicy(
            f"{name}-alerts-policy", arn=topic.arn,
            policy=pulumi.Output.all(topic.arn, args.account_id, args.partition, workspace_arn).apply(
                lambda v: topic_policy(v[0], v[1], v[2], region, spec.stack, v[3])),
            opts=child)

        # ---- CloudWatch
        self.promql_alarm_names = []
        if mon.cloudwatch:
            self._cloudwatch(topic, key, retention, collector_rbac)
        if uses_collector:
            self._scraper_network_policies()

        self.register_outputs({"topicArn": self.topic_arn, "kmsKeyArn": self.kms_key_arn,
                               "prometheus": mode.value, "cloudwatch": mon.cloudwatch})

    # ------------------------------------------------------------------ helpers

    def _warn(self, message: str) -> None:
        self.warnings.append(message)
        pulumi.log.warn(message, resource=self)

    def _opts(self, *, depends_on: Sequence[pulumi.Resource] = (), **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self, depends_on=list(depends_on), **kwargs)

    def _log_group(self, suffix: str, log_name: str, key: aws.kms.Key, retention: int) -> aws.cloudwatch.LogGroup:
        return aws.cloudwatch.LogGroup(f"{self._name}-{suffix}", name=log_name, kms_key_id=key.arn,
                                       retention_in_days=retention, tags=dict(self._args.tags), opts=self._opts())

    def _namespace(self, ns: str, *, privileged: bool) -> k8s.core.v1.Namespace:
        """``monitoring``: node-level exporters (node-exporter, DCGM) need host access, so Pod Security is
        ``privileged`` there, with ``baseline`` warnings."""
        level = "privileged" if privileged else "baseline"
        return k8s.core.v1.Namespace(
            f"{self._name}-ns",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=ns, labels={
                **labels("monitoring"), "pod-security.kubernetes.io/enforce": level,
                "pod-security.kubernetes.io/warn": "baseline"}),
            opts=self._opts(depends_on=self._args.helm_depends_on))

    def _collector_rbac(self) -> list[pulumi.Resource]:
        """ClusterRole + binding for the user AMP's managed collectors authenticate as (AMP user guide:
        "Configuring your Amazon EKS cluster"). (U) With API authentication mode AMP creates the EKS access
        entry mapping its service-linked role to this user; if it does not, add one for the scraper's roleArn."""
        role = k8s.rbac.v1.ClusterRole(
            f"{self._name}-collector",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="aps-collector-role", labels=labels("collector")),
            rules=collector_cluster_role(), opts=self._opts())
        binding = k8s.rbac.v1.ClusterRoleBinding(
            f"{self._name}-collector",
            metadata=k8s.meta.v1.ObjectMetaArgs(name="aps-collector-user-role-binding", labels=labels("collector")),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="ClusterRole",
                                             name="aps-collector-role"),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="User", name=APS_COLLECTOR_USER,
                                              api_group="rbac.authorization.k8s.io")],
            opts=self._opts(depends_on=[role]))
        return [role, binding]

    def _scraper(self, suffix: str, alias: str, destination: aws.amp.ScraperDestinationArgs, config: str,
                 rbac: Sequence[pulumi.Resource]) -> aws.amp.Scraper:
        a = self._args
        cluster_arn = pulumi.Output.all(a.partition, a.account_id, a.cluster_name_output).apply(
            lambda v: f"arn:{v[0]}:eks:{a.spec.region}:{v[1]}:cluster/{v[2]}")
        return aws.amp.Scraper(
            f"{self._name}-{suffix}", alias=alias,
            source=aws.amp.ScraperSourceArgs(eks=aws.amp.ScraperSourceEksArgs(
                cluster_arn=cluster_arn, subnet_ids=list(a.subnet_ids),
                security_group_ids=[a.cluster_security_group_id])),
            destination=destination, scrape_configuration=config, tags=dict(a.tags),
            opts=self._opts(depends_on=rbac))

    def _scraper_network_policies(self) -> None:
        """TCP 8000 from the node subnets into each model's vLLM pods (module docstring: trade-off)."""
        a = self._args
        np = k8s.networking.v1
        for md in a.spec.models:
            np.NetworkPolicy(
                f"{self._name}-{md.name}-collector",
                metadata=k8s.meta.v1.ObjectMetaArgs(name="allow-managed-scraper",
                                                    namespace=a.model_namespaces.get(md.name, md.name),
                                                    labels=labels("collector")),
                spec=np.NetworkPolicySpecArgs(
                    pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={
                        "app.kubernetes.io/name": "vllm", "app.kubernetes.io/instance": md.name}),
                    policy_types=["Ingress"],
                    ingress=[np.NetworkPolicyIngressRuleArgs(
                        from_=[np.NetworkPolicyPeerArgs(ip_block=np.IPBlockArgs(cidr=c)) for c in a.subnet_cidrs],
                        ports=[np.NetworkPolicyPortArgs(protocol="TCP", port=VLLM_PORT)])]),
                opts=self._opts())

    def _dcgm(self, ns: k8s.core.v1.Namespace) -> k8s.helm.v3.Release:
        return k8s.helm.v3.Release(
            f"{self._name}-dcgm-exporter", name="dcgm-exporter", chart=DCGM_EXPORTER.name,
            version=DCGM_EXPORTER.version, repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=DCGM_EXPORTER.repo),
            namespace=ns.metadata.name, values=dcgm_values(self._args.mirror_registry), atomic=True, timeout=600,
            # DaemonSet on GPU nodes only: with no GPU node up yet Helm would wait for nothing; do not block on it.
            skip_await=True,
            opts=self._opts(depends_on=[ns, *self._args.helm_depends_on]))

    # ------------------------------------------------------------------ prometheus: in-cluster

    def _in_cluster(self, topic: aws.sns.Topic, key: aws.kms.Key, dcgm: bool) -> None:
        a, spec = self._args, self._args.spec
        name = self._name
        ns = self._namespace(MONITORING_NAMESPACE, privileged=True)
        sc = k8s.storage.v1.StorageClass(
            f"{name}-gp3",
            metadata=k8s.meta.v1.ObjectMetaArgs(name=STORAGE_CLASS, labels=labels("prometheus")),
            provisioner="ebs.csi.aws.com",
            parameters={"type": "gp3", "encrypted": "true"},
            volume_binding_mode="WaitForFirstConsumer",
            reclaim_policy="Delete" if spec.environment == "dev" else "Retain",
            allow_volume_expansion=True,
            opts=self._opts(depends_on=a.helm_depends_on))
        role = aws.iam.Role(
            f"{name}-alertmanager",
            description=f"servekit {spec.stack}: Alertmanager publishes to the alerts topic",
            assume_role_policy=assume_role_policy("pods.eks.amazonaws.com", tag_session=True),
            tags=dict(a.tags), opts=self._opts())
        aws.iam.RolePolicy(f"{name}-alertmanager-publish", role=role.id,
                           policy=pulumi.Output.all(topic.arn, key.arn).apply(lambda v: publish_policy(v[0], v[1])),
                           opts=self._opts())
        identity = aws.eks.PodIdentityAssociation(
            f"{name}-alertmanager", cluster_name=a.cluster_name_output, namespace=MONITORING_NAMESPACE,
            service_account=ALERTMANAGER_SA, role_arn=role.arn, tags=dict(a.tags), opts=self._opts(depends_on=[ns]))
        am_config = topic.arn.apply(lambda arn: alertmanager_route(arn, spec.region, spec.stack))
        k8s.helm.v3.Release(
            f"{name}-kube-prometheus-stack", name="kube-prometheus-stack", chart=KUBE_PROMETHEUS_STACK.name,
            version=KUBE_PROMETHEUS_STACK.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_PROMETHEUS_STACK.repo),
            namespace=ns.metadata.name,
            values=kube_prometheus_values(spec, alertmanager_config=am_config, node_selector=a.system_node_selector,
                                          dcgm=dcgm),
            atomic=True, timeout=900,
            opts=self._opts(depends_on=[ns, sc, identity, *a.helm_depends_on]))
        self.prometheus_address = f"http://prometheus-operated.{MONITORING_NAMESPACE}.svc:9090"
        if dcgm:
            self._dcgm(ns)
        for model, board in dashboards(spec).items():
            k8s.core.v1.ConfigMap(
                f"{name}-dashboard-{model}",
                metadata=k8s.meta.v1.ObjectMetaArgs(
                    name=_k8s_name(f"servekit-dashboard-{model}"), namespace=MONITORING_NAMESPACE,
                    labels={**labels("dashboards"), "grafana_dashboard": "1"}),
                data={f"servekit-{spec.stack}-{model}.json": dashboard_json(board)},
                opts=self._opts(depends_on=[ns]))

    # ------------------------------------------------------------------ prometheus: amp

    def _amp(self, topic: aws.sns.Topic, key: aws.kms.Key, dcgm: bool, log_retention: int,
             rbac: Sequence[pulumi.Resource]) -> aws.amp.Workspace:
        a, spec = self._args, self._args.spec
        name = self._name
        tags = dict(a.tags)
        logs = self._log_group("amp-logs", f"/aws/vendedlogs/servekit/{spec.stack}/prometheus", key, log_retention)
        workspace = aws.amp.Workspace(
            f"{name}-workspace", alias=f"servekit-{spec.stack}", kms_key_arn=key.arn,
            logging_configuration=aws.amp.WorkspaceLoggingConfigurationArgs(
                log_group_arn=logs.arn.apply(lambda arn: f"{arn}:*")),
            tags=tags, opts=self._opts())
        aws.amp.WorkspaceConfiguration(f"{name}-workspace-config", workspace_id=workspace.id,
                                       retention_period_in_days=spec.monitoring.retention_days, opts=self._opts())
        for group in rule_groups(spec):
            aws.amp.RuleGroupNamespace(
                f"{name}-rules-{group['name']}", name=group["name"], workspace_id=workspace.id,
                data=rule_file([group]), tags=tags, opts=self._opts())
        aws.amp.AlertManagerDefinition(
            f"{name}-alertmanager", workspace_id=workspace.id,
            definition=topic.arn.apply(lambda arn: amp_alertmanager_definition(arn, spec.region, spec.stack)),
            opts=self._opts())
        ns = self._namespace(MONITORING_NAMESPACE, privileged=True)
        ksm_image = image_parts(KUBE_STATE_METRICS_IMAGE, a.mirror_registry)
        k8s.helm.v3.Release(
            f"{name}-kube-state-metrics", name="kube-state-metrics", chart=KUBE_STATE_METRICS.name,
            version=KUBE_STATE_METRICS.version,
            repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=KUBE_STATE_METRICS.repo),
            namespace=ns.metadata.name,
            values={"image": ksm_image, "nodeSelector": dict(a.system_node_selector), "resources": SMALL},
            atomic=True, timeout=600, opts=self._opts(depends_on=[ns, *a.helm_depends_on]))
        if dcgm:
            self._dcgm(ns)
        if spec.network.egress is Egress.NONE:
            # The managed collector's remote write leaves through the VPC (U: AMP user guide is not explicit;
            # an endpoint is cheap insurance). components/network.py's list has no aps-workspaces.
            aws.ec2.VpcEndpoint(
                f"{name}-aps-workspaces", vpc_id=a.vpc_id,
                service_name=f"com.amazonaws.{spec.region}.aps-workspaces", vpc_endpoint_type="Interface",
                private_dns_enabled=True, subnet_ids=list(a.subnet_ids),
                security_group_ids=[a.endpoint_security_group_id] if a.endpoint_security_group_id else None,
                tags=with_tags(tags, Name=f"servekit-{spec.stack}-aps-workspaces"), opts=self._opts())
        self._scraper("amp-scraper", f"servekit-{spec.stack}-amp",
                      aws.amp.ScraperDestinationArgs(amp=aws.amp.ScraperDestinationAmpArgs(workspace_arn=workspace.arn)),
                      scrape_configuration(spec, vllm_only=False, dcgm=dcgm), rbac)
        return workspace

    # ------------------------------------------------------------------ cloudwatch

    def _cloudwatch(self, topic: aws.sns.Topic, key: aws.kms.Key, retention: int,
                    rbac: Sequence[pulumi.Resource]) -> None:
        a, spec = self._args, self._args.spec
        name = self._name
        tags = dict(a.tags)
        groups = [self._log_group(f"ci-{g}", f"/aws/containerinsights/{a.cluster_name}/{g}", key, retention)
                  for g in CONTAINER_INSIGHTS_LOG_GROUPS]
        role = aws.iam.Role(
            f"{name}-cloudwatch-agent",
            description=f"servekit {spec.stack}: CloudWatch agent and Fluent Bit (Container Insights)",
            assume_role_policy=assume_role_policy("pods.eks.amazonaws.com", tag_session=True),
            tags=tags, opts=self._opts())
        attachment = aws.iam.RolePolicyAttachment(
            f"{name}-cloudwatch-agent", role=role.name,
            policy_arn=pulumi.Output.concat("arn:", a.partition, ":iam::aws:policy/CloudWatchAgentServerPolicy"),
            opts=self._opts())
        aws.eks.Addon(
            f"{name}-cloudwatch-observability", cluster_name=a.cluster_name_output, addon_name=CLOUDWATCH_ADDON,
            addon_version=CLOUDWATCH_ADDON_VERSIONS[spec.cluster.version],
            configuration_values=addon_configuration(),
            pod_identity_associations=[aws.eks.AddonPodIdentityAssociationArgs(
                role_arn=role.arn, service_account=CLOUDWATCH_AGENT_SA)],
            resolve_conflicts_on_create="OVERWRITE", resolve_conflicts_on_update="PRESERVE", tags=tags,
            opts=self._opts(depends_on=[*groups, attachment, *a.addon_depends_on]))

        dataset = pulumi.Output.all(a.partition, a.account_id).apply(
            lambda v: f"arn:{v[0]}:cloudwatch:{spec.region}:{v[1]}:dataset/default")
        scraper = self._scraper(
            "cloudwatch-scraper", f"servekit-{spec.stack}-cloudwatch",
            aws.amp.ScraperDestinationArgs(cloudwatch=aws.amp.ScraperDestinationCloudwatchArgs(dataset_arn=dataset)),
            scrape_configuration(spec, vllm_only=True, dcgm=False), rbac)

        actions = [topic.arn]
        alarm_arns: dict[str, pulumi.Output[str]] = {}
        for alarm in promql_alarms(spec):
            res = aws.cloudwatch.MetricAlarm(
                f"{name}-{alarm.name.removeprefix(f'servekit-{spec.stack}-')}", name=alarm.name,
                alarm_description=alarm.description,
                evaluation_criteria=aws.cloudwatch.MetricAlarmEvaluationCriteriaArgs(
                    promql_criteria=aws.cloudwatch.MetricAlarmEvaluationCriteriaPromqlCriteriaArgs(
                        query=alarm.query, pending_period=alarm.pending_seconds, recovery_period=RECOVERY_SECONDS)),
                evaluation_interval=PROMQL_EVALUATION_SECONDS,
                alarm_actions=actions, ok_actions=actions, tags=with_tags(tags, **{"servekit:model": alarm.model}),
                opts=self._opts(depends_on=[scraper]))
            self.promql_alarm_names.append(alarm.name)
            alarm_arns[alarm.name] = res.arn
        for plan in container_insights_alarms(spec, a.cluster_name):
            common: dict[str, Any] = dict(
                name=plan.name, alarm_description=plan.description, comparison_operator=plan.comparison,
                threshold=plan.threshold, evaluation_periods=plan.evaluation_periods,
                datapoints_to_alarm=plan.evaluation_periods, treat_missing_data=plan.treat_missing_data,
                alarm_actions=actions, ok_actions=actions, tags=tags)
            if plan.query is not None:
                common["metric_queries"] = [aws.cloudwatch.MetricAlarmMetricQueryArgs(
                    id="q", expression=plan.query, period=plan.period, return_data=True)]
            else:
                common.update(namespace="ContainerInsights", metric_name=plan.metric_name, statistic=plan.statistic,
                              period=plan.period, dimensions={"ClusterName": a.cluster_name})
            res = aws.cloudwatch.MetricAlarm(f"{name}-{plan.name.removeprefix(f'servekit-{spec.stack}-')}",
                                             **common, opts=self._opts(depends_on=groups))
            alarm_arns[plan.name] = res.arn
        names = sorted(alarm_arns)
        aws.cloudwatch.Dashboard(
            f"{name}-dashboard", dashboard_name=f"servekit-{spec.stack}",
            dashboard_body=pulumi.Output.all(*(alarm_arns[n] for n in names)).apply(
                lambda arns: dashboard_body(spec, a.cluster_name, dict(zip(names, arns, strict=True)))),
            opts=self._opts())


def dashboard_body(spec: DeploymentSpec, cluster_name: str, alarm_arns: Mapping[str, str]) -> str:
    """CloudWatch dashboard: alarm states (stack, then per model), GPU utilization and memory, failed nodes."""
    region = spec.region
    widgets: list[dict[str, Any]] = [{
        "type": "text", "x": 0, "y": 0, "width": 24, "height": 2,
        "properties": {"markdown": f"## servekit {spec.stack}\nSLA alarms per model (PromQL over vLLM's metrics) "
                                   "and GPU/cluster health (Container Insights). Runbooks: docs/runbooks.md"},
    }]
    y = 2
    stack_alarms = [arn for n, arn in alarm_arns.items()
                    if not any(n.startswith(f"servekit-{spec.stack}-{md.name}-") for md in spec.models)]
    rows = [("stack", stack_alarms)] + [
        (md.name, [arn for n, arn in alarm_arns.items() if n.startswith(f"servekit-{spec.stack}-{md.name}-")])
        for md in spec.models]
    for title, arns in rows:
        if arns:
            widgets.append({"type": "alarm", "x": 0, "y": y, "width": 24, "height": 3, "properties": {
                "title": f"Alarms: {title}", "alarms": sorted(arns), "sortBy": "stateUpdatedTimestamp"}})
            y += 3

    def metric(title: str, metric_name: str, stats: Sequence[str], x: int) -> dict[str, Any]:
        return {"type": "metric", "x": x, "y": y, "width": 8, "height": 6, "properties": {
            "title": title, "region": region, "view": "timeSeries", "period": 300,
            "metrics": [["ContainerInsights", metric_name, "ClusterName", cluster_name, {"stat": s, "label": s}]
                        for s in stats]}}

    widgets += [
        metric("GPU utilization (%)", "node_gpu_utilization", ["Average", "Minimum", "Maximum"], 0),
        metric("GPU memory used (%)", "node_gpu_memory_utilization", ["Average", "Maximum"], 8),
        metric("Failed nodes", "cluster_failed_node_count", ["Maximum"], 16),
    ]
    return json.dumps({"widgets": widgets}, sort_keys=True)


# --------------------------------------------------------------------------- platform extension


def attach(ctx: PlatformContext) -> dict[str, Any]:
    """components.platform extension: monitoring for the stack (runs after components.vllm_service)."""
    spec, plan = ctx.spec, ctx.plan
    cluster = ctx.cluster
    models = ctx.outputs.get("models") or {}
    namespaces = {name: m["namespace"] for name, m in models.items() if isinstance(m, dict) and "namespace" in m}
    registry = ctx.outputs.get("imageRegistry")
    system = [cluster.system_node_group, *(cluster.addons[n] for n in ("coredns", "aws-ebs-csi-driver")
                                             if n in cluster.addons)]
    monitoring = Monitoring("monitoring", MonitoringArgs(
        spec=spec, cluster_name=plan.cluster_name, cluster_name_output=cluster.name,
        cluster_security_group_id=cluster.security_group_id,
        subnet_ids=[ctx.network.private_subnet_ids[z] for z in plan.zones],
        subnet_cidrs=[plan.subnets.private[z] for z in plan.zones],
        account_id=ctx.account_id, partition=ctx.partition, log_retention_days=plan.log_retention_days,
        tags=dict(ctx.tags), vpc_id=ctx.network.vpc_id,
        endpoint_security_group_id=ctx.network.endpoint_security_group_id,
        mirror_registry=registry if spec.network.egress is Egress.NONE else None,
        system_node_selector=dict(SYSTEM_NODE_SELECTOR),
        addon_depends_on=[cluster.system_node_group, *(cluster.addons[n] for n in ("eks-pod-identity-agent",)
                                                       if n in cluster.addons)],
        helm_depends_on=system, model_namespaces=namespaces,
    ), ctx.k8s_opts())
    out: dict[str, Any] = {
        "prometheus": spec.monitoring.prometheus.value,
        "alertTopicArn": monitoring.topic_arn,
        "alertEmails": list(spec.monitoring.alert_emails),
        "cloudwatchAlarms": list(monitoring.promql_alarm_names),
    }
    if monitoring.workspace_id is not None:
        out["ampWorkspaceId"] = monitoring.workspace_id
    if monitoring.prometheus_address is not None:
        out["prometheusAddress"] = monitoring.prometheus_address
    return {"monitoring": out}
