"""components.monitoring under the offline engine (the real program, recording mocks, preview=False).

Expected values come from the stack files read as plain YAML (modes, e-mails, SLA numbers), from
the rule and dashboard generators (the objects the component must carry unchanged), from the
platform's stated retention rule (30 days dev, 365 prod) and from documented AWS/Kubernetes shapes;
never from the component's own planning helpers unless a test says it checks consistency with them.

The prometheus-operator objects (PrometheusRule, PodMonitor, ServiceMonitor) are rendered by the
kube-prometheus-stack release from its values. No CRD schema is available offline here, so they
get structural checks against the prometheus-operator v1 API (required fields, types, the one of
record/alert per rule) plus ``promtool check rules`` on the same groups; built-in Kubernetes
objects go through kubernetes-validate's strict 1.34 schemas.
"""

from __future__ import annotations

import fnmatch
import inspect
import json
import re
import shutil
import subprocess
import sys
import warnings
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_stacks import TMP_STACKS, config, model, write_stack
from aws_stacks import plan as repo_plan

from servekit.alert_rules import rule_file, rule_groups
from servekit.catalog import REPO_ROOT
from servekit.dashboards import dashboard_json, dashboards
from servekit.errors import UserError
from servekit.manifests import kubernetes_objects, validate_object
from servekit.offline import Plan, PlanResource, plan_stack
from servekit.spec import DeploymentSpec, MonitoringSpec
from servekit.stackfile import resolve_stack

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import pulumi_aws as aws

REPO = ("dev", "prod", "regulated")
RELEASE = "kubernetes:helm.sh/v3:Release"
ALARM = "aws:cloudwatch/metricAlarm:MetricAlarm"
SCRAPER = "aws:amp/scraper:Scraper"
TOPIC = "aws:sns/topic:Topic"
MON_DIR = TMP_STACKS / "monitoring-tests"
BASE_TAG_KEYS = ("owner", "cost-center", "data-classification", "servekit:stack")

# Purpose-built stacks for what the repository's stacks do not show.
CUSTOM: dict[str, dict[str, Any]] = {
    # Prometheus none, CloudWatch on: the only alerting path; two models, one with a TTFT SLA, no e-mails.
    "mon-none": config(monitoring={"prometheus": "none"}, models=[
        model(name="alpha", sla={"p95E2eSeconds": 8, "p95TtftSeconds": 2, "concurrencyPerReplica": 4,
                                 "maxErrorRate": 0.02}),
        model(name="beta", replicas=2, sla={"p95E2eSeconds": 12, "concurrencyPerReplica": 6})]),
    # In-cluster without CloudWatch, with a log-retention override and a tenant who set storage.
    "mon-quiet": config(monitoring={"prometheus": "in-cluster", "cloudwatch": False, "storageGib": 80,
                                    "retentionDays": 21, "alertEmails": ["a@example.com"], "logRetentionDays": 90}),
    # Egress none with an explicit amp: the aps-workspaces endpoint, no DCGM exporter.
    "mon-airgap": config(network={"vpcCidr": "10.81.0.0/16", "azCount": 2, "egress": "none"},
                         monitoring={"prometheus": "amp", "alertEmails": ["x@example.org"]},
                         models=[model(source="s3")]),
}
for _name, _cfg in CUSTOM.items():
    write_stack(MON_DIR, _name, _cfg)


@cache
def plan(stack: str) -> Plan:
    return plan_stack(stack, MON_DIR) if stack in CUSTOM else repo_plan(stack)


def stack_yaml(stack: str) -> dict[str, Any]:
    """The stack file as the user wrote it (independent of servekit's parser)."""
    if stack in CUSTOM:
        return CUSTOM[stack]
    return yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


def spec_of(stack: str) -> DeploymentSpec:
    return resolve_stack(stack, stacks_dir=MON_DIR).spec if stack in CUSTOM else resolve_stack(stack).spec


def mine(p: Plan) -> list[PlanResource]:
    comp = [r for r in p.resources if r.type == "servekit:monitoring:Monitoring"]
    assert len(comp) == 1, p.stack
    return list(p.descendants(comp[0].urn))


def of(p: Plan, token: str) -> list[PlanResource]:
    return [r for r in mine(p) if r.type == token]


def one(p: Plan, token: str, **match: Any) -> PlanResource:
    found = [r for r in of(p, token) if all(r.inputs.get(k) == v for k, v in match.items())]
    assert len(found) == 1, (p.stack, token, match, len(found))
    return found[0]


def release(p: Plan, chart: str) -> PlanResource:
    return one(p, RELEASE, chart=chart)


def topic_arn(p: Plan) -> str:
    """The topic's ARN (the stack output), checked against the one Topic resource."""
    arn = str(p.outputs["monitoring"]["alertTopicArn"])
    assert arn.endswith(f":{one(p, TOPIC).id}") or arn.endswith(f"/{one(p, TOPIC).id}")
    return arn


def monitoring_key(p: Plan) -> PlanResource:
    return one(p, "aws:kms/key:Key")


def key_arn(p: Plan) -> str:
    key = monitoring_key(p)
    return f"arn:aws:kms:us-east-1:123456789012:key/{key.id}"


# --------------------------------------------------------------------------- each mode creates what it says


def test_in_cluster_stack_gets_a_pinned_kube_prometheus_stack_with_its_retention_and_volume() -> None:
    for stack in ("dev", "mon-quiet"):
        p, want = plan(stack), stack_yaml(stack)["servekit:monitoring"]
        kps = release(p, "kube-prometheus-stack")
        assert kps.inputs["version"] == "67.8.0"
        assert kps.inputs["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
        assert kps.inputs["namespace"] == "monitoring"
        spec = kps.inputs["values"]["prometheus"]["prometheusSpec"]
        assert spec["retention"] == f"{want['retentionDays']}d"
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == f"{want['storageGib']}Gi"
        size = float(spec["retentionSize"].removesuffix("GiB"))
        assert 0.7 * want["storageGib"] <= size < want["storageGib"]  # stops before the disk is full
        sc = one(p, "kubernetes:storage.k8s.io/v1:StorageClass")
        assert claim["storageClassName"] == sc.inputs["metadata"]["name"]
        assert sc.inputs["parameters"] == {"type": "gp3", "encrypted": "true"}
        for kind in ("podMonitorSelectorNilUsesHelmValues", "serviceMonitorSelectorNilUsesHelmValues",
                     "ruleSelectorNilUsesHelmValues"):
            assert spec[kind] is False  # our monitors and rules are selected without the chart's labels
        assert kps.inputs["values"]["defaultRules"]["create"] is False  # no always-firing Watchdog
        assert not of(p, "aws:amp/workspace:Workspace") and not of(p, "aws:amp/ruleGroupNamespace:RuleGroupNamespace")


def test_in_cluster_rules_are_exactly_the_generated_groups_and_pass_promtool(tmp_path: Path) -> None:
    p = plan("dev")
    values = release(p, "kube-prometheus-stack").inputs["values"]
    rendered = [g for body in values["additionalPrometheusRulesMap"].values() for g in body["groups"]]
    expected = rule_groups(spec_of("dev"))
    by_name = {g["name"]: g for g in rendered}  # (the plan records maps with sorted keys)
    assert len(by_name) == len(rendered) and by_name == {g["name"]: g for g in expected}  # unchanged
    assert len(values["additionalPrometheusRulesMap"]) == len(expected)
    for key in values["additionalPrometheusRulesMap"]:
        assert len(f"kps-{key}") <= 63  # the chart names it kps-<key>, cut at 63
    for body in values["additionalPrometheusRulesMap"].values():
        check_prometheus_rule_spec({"groups": body["groups"]})
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed: apt-get install prometheus (scripts/test.sh does)")
    f = tmp_path / "rules.yaml"
    f.write_text(rule_file(rendered))
    out = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_vllm_pod_monitor_and_dcgm_service_monitor_keep_the_labels_the_rules_read() -> None:
    p, spec = plan("dev"), spec_of("dev")
    prom = release(p, "kube-prometheus-stack").inputs["values"]["prometheus"]
    (pm,) = prom["additionalPodMonitors"]
    check_monitor(pm, "podMetricsEndpoints")
    assert pm["namespaceSelector"]["matchNames"] == [m.name for m in spec.models]
    # The Deployment's pods carry these labels and name the container port "http".
    dep = next(r for r in p.of_type("kubernetes:apps/v1:Deployment"))
    pod_labels = dep.inputs["spec"]["template"]["metadata"]["labels"]
    assert pm["selector"]["matchLabels"].items() <= pod_labels.items()
    ports = [c["name"] for c in dep.inputs["spec"]["template"]["spec"]["containers"][0]["ports"]]
    assert pm["podMetricsEndpoints"][0]["port"] in ports
    (sm,) = prom["additionalServiceMonitors"]
    check_monitor(sm, "endpoints")
    # dcgm-exporter labels each GPU with the namespace/pod using it; the GPU idle rule groups by namespace.
    assert sm["endpoints"][0]["honorLabels"] is True
    gpu_rules = json.dumps(next(g for g in rule_groups(spec) if g["name"].endswith("-gpu")))
    assert "namespace" in gpu_rules
    assert pm["podMetricsEndpoints"][0]["honorLabels"] is False  # KEDA's query needs the target's namespace


def test_dcgm_exporter_is_pinned_tolerates_the_gpu_taint_and_runs_only_on_gpu_nodes() -> None:
    for stack in ("dev", "prod"):
        dcgm = release(plan(stack), "dcgm-exporter")
        assert dcgm.inputs["version"] == "3.6.1"
        values = dcgm.inputs["values"]
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in values["tolerations"]
        terms = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "servekit.io/gpu"
        # GPU node groups carry that label and the taint the toleration matches.
        ng = next(r for r in plan(stack).of_type("aws:eks/nodeGroup:NodeGroup") if "servekit.io/gpu" in
                  r.inputs.get("labels", {}))
        assert ng.inputs["taints"][0]["key"] == "nvidia.com/gpu"
        assert re.fullmatch(r".+:\d+\.\d+\.\d+-\d+\.\d+\.\d+-ubuntu\d+\.\d+", values["image"]["repository"] + ":" +
                            values["image"]["tag"])
        assert values["serviceMonitor"]["enabled"] is False  # ours (honorLabels) or the AMP scraper's job


def test_egress_none_leaves_dcgm_out_with_a_warning_and_adds_the_aps_endpoint() -> None:
    for stack in ("regulated", "mon-airgap"):
        p = plan(stack)
        assert not [r for r in of(p, RELEASE) if r.inputs["chart"] == "dcgm-exporter"]
        assert any("DCGM exporter" in w for w in p.warnings), p.warnings
        ep = one(p, "aws:ec2/vpcEndpoint:VpcEndpoint")
        assert ep.inputs["serviceName"] == "com.amazonaws.us-east-1.aps-workspaces"
        assert ep.inputs["privateDnsEnabled"] is True and ep.inputs["vpcEndpointType"] == "Interface"
        net_sg = next(r for r in p.of_type("aws:ec2/securityGroup:SecurityGroup") if r.name.endswith("-endpoints"))
        assert ep.inputs["securityGroupIds"] == [net_sg.id]
        # kube-state-metrics still comes, through the ECR pull-through mirror.
        ksm = release(p, "kube-state-metrics").inputs["values"]["image"]
        assert ksm["registry"] == "123456789012.dkr.ecr.us-east-1.amazonaws.com"
        assert ksm["repository"] == "k8s/kube-state-metrics/kube-state-metrics"
    for stack in ("prod",):
        assert not of(plan(stack), "aws:ec2/vpcEndpoint:VpcEndpoint")  # NAT: AMP's public endpoint is reachable


def test_amp_stack_gets_workspace_rule_namespaces_and_alert_manager_to_the_topic() -> None:
    for stack in ("prod", "regulated", "mon-airgap"):
        p, spec = plan(stack), spec_of(stack)
        ws = one(p, "aws:amp/workspace:Workspace")
        assert ws.inputs["alias"] == f"servekit-{stack}"
        assert ws.inputs["kmsKeyArn"] == key_arn(p)
        cfg = one(p, "aws:amp/workspaceConfiguration:WorkspaceConfiguration")
        assert cfg.inputs["workspaceId"] == ws.id
        want_days = stack_yaml(stack)["servekit:monitoring"].get("retentionDays", 15)
        assert cfg.inputs["retentionPeriodInDays"] == want_days
        namespaces = of(p, "aws:amp/ruleGroupNamespace:RuleGroupNamespace")
        groups = rule_groups(spec)
        assert sorted(n.inputs["name"] for n in namespaces) == sorted(g["name"] for g in groups)
        for ns in namespaces:
            assert ns.inputs["workspaceId"] == ws.id
            (group,) = [g for g in groups if g["name"] == ns.inputs["name"]]
            assert ns.inputs["data"] == rule_file([group])  # what `servekit rules` writes
        am = one(p, "aws:amp/alertManagerDefinition:AlertManagerDefinition")
        assert am.inputs["workspaceId"] == ws.id
        inner = yaml.safe_load(yaml.safe_load(am.inputs["definition"])["alertmanager_config"])
        (receiver,) = inner["receivers"]
        assert inner["route"]["receiver"] == receiver["name"]
        (sns,) = receiver["sns_configs"]
        assert sns["topic_arn"] == topic_arn(p) and sns["sigv4"]["region"] == "us-east-1"
        # no in-cluster Prometheus in this mode
        assert not [r for r in of(p, RELEASE) if r.inputs["chart"] == "kube-prometheus-stack"]
        assert "prometheusAddress" not in p.outputs["monitoring"]


def test_amp_scraper_covers_vllm_dcgm_and_kube_state_metrics_from_the_cluster_subnets() -> None:
    p, spec = plan("prod"), spec_of("prod")
    ws = one(p, "aws:amp/workspace:Workspace")
    amp = [s for s in of(p, SCRAPER) if "amp" in s.inputs["destination"]]
    (scraper,) = amp
    workspace_arn = f"arn:aws:amp:us-east-1:123456789012:workspace/{ws.id}"
    assert scraper.inputs["destination"]["amp"]["workspaceArn"] == workspace_arn
    eks = scraper.inputs["source"]["eks"]
    cluster = next(iter(p.of_type("aws:eks/cluster:Cluster")))
    assert eks["clusterArn"] == f"arn:aws:eks:us-east-1:123456789012:cluster/{cluster.inputs['name']}"
    node_subnets = sorted(str(r.id) for r in p.of_type("aws:ec2/subnet:Subnet")
                          if r.name.startswith("servekit-network-nodes"))
    assert sorted(eks["subnetIds"]) == node_subnets
    assert len(eks["securityGroupIds"]) == 1
    cfg = yaml.safe_load(scraper.inputs["scrapeConfiguration"])
    jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
    assert set(jobs) == {"vllm", "dcgm-exporter", "kube-state-metrics"}
    assert jobs["vllm"]["kubernetes_sd_configs"][0]["namespaces"]["names"] == [m.name for m in spec.models]
    assert jobs["dcgm-exporter"]["honor_labels"] is True and jobs["kube-state-metrics"]["honor_labels"] is True
    assert release(p, "kube-state-metrics").inputs["version"] == "5.28.0"  # the Kubernetes rules need KSM


def test_prometheus_none_creates_no_prometheus_resources_at_all() -> None:
    p = plan("mon-none")
    types = {r.type for r in mine(p)}
    assert not [t for t in types if t.startswith("kubernetes:monitoring.coreos.com")]
    for t in ("aws:amp/workspace:Workspace", "aws:amp/ruleGroupNamespace:RuleGroupNamespace",
              "aws:amp/alertManagerDefinition:AlertManagerDefinition",
              "aws:amp/workspaceConfiguration:WorkspaceConfiguration",
              RELEASE, "kubernetes:core/v1:Namespace", "kubernetes:storage.k8s.io/v1:StorageClass",
              "kubernetes:core/v1:ConfigMap"):
        assert t not in types, t
    # The only collector writes to CloudWatch (the PromQL alarms' data), not to a Prometheus.
    (scraper,) = of(p, SCRAPER)
    assert set(scraper.inputs["destination"]) == {"cloudwatch"}
    assert p.outputs["monitoring"]["prometheus"] == "none"
    assert "ampWorkspaceId" not in p.outputs["monitoring"] and "prometheusAddress" not in p.outputs["monitoring"]
    assert any("alertEmails is empty" in w for w in p.warnings)  # nobody subscribed: said, not silent


# --------------------------------------------------------------------------- CloudWatch


def promql(p: Plan) -> dict[str, dict[str, Any]]:
    return {a.inputs["name"]: a.inputs for a in of(p, ALARM) if "evaluationCriteria" in a.inputs}


def threshold(query: str) -> float:
    return float(re.search(r"(?:>|>=)\s*([0-9.e+-]+)\s*$", query).group(1))  # type: ignore[union-attr]


@pytest.mark.parametrize("stack", [*REPO, "mon-none"])
def test_every_model_gets_promql_sla_alarms_from_its_sla_that_notify_the_topic(stack: str) -> None:
    p = plan(stack)
    alarms = promql(p)
    arn = topic_arn(p)
    for m in stack_yaml(stack)["servekit:models"]:
        name, sla = m["name"], m["sla"]
        prefix = f"servekit-{stack}-{name}"
        p95 = alarms[f"{prefix}-p95-latency"]["evaluationCriteria"]["promqlCriteria"]
        assert "histogram_quantile(0.95" in p95["query"]
        assert f'vllm:e2e_request_latency_seconds_bucket{{model_name="{name}"}}' in p95["query"]
        assert threshold(p95["query"]) == sla["p95E2eSeconds"]
        assert p95["pendingPeriod"] == 600  # the Prometheus alert's for: 10m
        err = alarms[f"{prefix}-error-rate"]["evaluationCriteria"]["promqlCriteria"]["query"]
        assert threshold(err) == sla.get("maxErrorRate", 0.01) and 'finished_reason=~"error"' in err
        queue = alarms[f"{prefix}-queue"]["evaluationCriteria"]["promqlCriteria"]["query"]
        assert queue.startswith("max by (model_name) (vllm:num_requests_waiting")
        assert threshold(queue) == sla["concurrencyPerReplica"]
        ttft = alarms.get(f"{prefix}-p95-ttft")
        if "p95TtftSeconds" in sla:
            assert ttft is not None and "time_to_first_token_seconds_bucket" in ttft["evaluationCriteria"][
                "promqlCriteria"]["query"]
            assert threshold(ttft["evaluationCriteria"]["promqlCriteria"]["query"]) == sla["p95TtftSeconds"]
        else:
            assert ttft is None
        assert f"{prefix}-metrics-absent" in alarms
    for a in of(p, ALARM):
        assert a.inputs["alarmActions"] == [arn] and a.inputs["okActions"] == [arn], a.name
    for inputs in promql(p).values():
        assert inputs["evaluationInterval"] == 60  # required with evaluationCriteria
        for forbidden in ("metricName", "namespace", "statistic", "period", "threshold"):
            assert forbidden not in inputs  # PromQL alarms take none of the classic fields


def test_promql_alarm_queries_parse_as_promql(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not installed: apt-get install prometheus (scripts/test.sh does)")
    rules = [{"alert": f"A{i}", "expr": a["evaluationCriteria"]["promqlCriteria"]["query"]}
             for stack in (*REPO, "mon-none") for i, a in enumerate(promql(plan(stack)).values())]
    f = tmp_path / "alarms.yaml"
    f.write_text(yaml.safe_dump({"groups": [{"name": "cloudwatch-alarms", "rules": rules}]}))
    out = subprocess.run([promtool, "check", "rules", str(f)], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_gpu_node_and_restart_alarms_use_container_insights() -> None:
    p, spec = plan("prod"), spec_of("prod")
    cluster = f"servekit-{spec.stack}"
    classic = {a.inputs["name"]: a.inputs for a in of(p, ALARM) if "evaluationCriteria" not in a.inputs}
    mem = classic["servekit-prod-gpu-memory-high"]
    assert (mem["namespace"], mem["metricName"], mem["dimensions"]) == (
        "ContainerInsights", "node_gpu_memory_utilization", {"ClusterName": cluster})
    # vLLM reserves gpuMemoryUtilization (0.92 by default in both prod models) + 3 % headroom, in percent.
    assert mem["threshold"] == pytest.approx(95.0)
    idle = classic["servekit-prod-gpu-idle"]
    assert idle["comparisonOperator"] == "LessThanThreshold" and idle["period"] * idle["evaluationPeriods"] == 6 * 3600
    assert classic["servekit-prod-node-failures"]["metricName"] == "cluster_failed_node_count"
    for m in spec.models:
        q = classic[f"servekit-prod-{m.name}-restarts"]["metricQueries"][0]
        assert "pod_number_of_container_restarts" in q["expression"]
        assert f"Namespace = '{m.name}'" in q["expression"] and f"ClusterName = '{cluster}'" in q["expression"]
        assert q["returnData"] is True


def test_cloudwatch_addon_is_pinned_with_its_pod_identity_and_waits_for_encrypted_log_groups() -> None:
    for stack in REPO:
        p = plan(stack)
        addon = one(p, "aws:eks/addon:Addon", addonName="amazon-cloudwatch-observability")
        assert re.fullmatch(r"v\d+\.\d+\.\d+-eksbuild\.\d+", addon.inputs["addonVersion"])
        (assoc,) = addon.inputs["podIdentityAssociations"]
        assert assoc["serviceAccount"] == "cloudwatch-agent"
        role = next(r for r in of(p, "aws:iam/role:Role") if r.name == "monitoring-cloudwatch-agent")
        assert assoc["roleArn"].startswith("arn:aws:iam::123456789012:role/monitoring-cloudwatch-agent")
        trust = json.loads(role.inputs["assumeRolePolicy"])
        assert trust["Statement"][0]["Principal"] == {"Service": "pods.eks.amazonaws.com"}
        (att,) = [r for r in of(p, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                  if r.name == "monitoring-cloudwatch-agent"]
        assert att.inputs["policyArn"] == "arn:aws:iam::aws:policy/CloudWatchAgentServerPolicy"
        conf = json.loads(addon.inputs["configurationValues"])
        kube = conf["agent"]["config"]["logs"]["metrics_collected"]["kubernetes"]
        assert kube["enhanced_container_insights"] is True and kube["accelerated_compute_metrics"] is True
        groups = [g for g in of(p, "aws:cloudwatch/logGroup:LogGroup") if "/aws/containerinsights/" in g.inputs["name"]]
        assert sorted(g.inputs["name"].rsplit("/", 1)[-1] for g in groups) == ["application", "dataplane", "host",
                                                                             "performance"]
        assert {g.urn for g in groups} <= set(addon.dependencies)  # created before the agent could auto-create them


def test_cloudwatch_collector_scrapes_only_vllm_into_cloudwatch() -> None:
    for stack in (*REPO, "mon-none"):
        p = plan(stack)
        (cw,) = [s for s in of(p, SCRAPER) if "cloudwatch" in s.inputs["destination"]]
        assert cw.inputs["destination"]["cloudwatch"]["datasetArn"] == \
            "arn:aws:cloudwatch:us-east-1:123456789012:dataset/default"
        cfg = yaml.safe_load(cw.inputs["scrapeConfiguration"])
        (job,) = cfg["scrape_configs"]
        assert job["metric_relabel_configs"] == [{"source_labels": ["__name__"], "regex": "vllm:.*", "action": "keep"}]
        assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [m["name"] for m in
                                                                          stack_yaml(stack)["servekit:models"]]
        alarm_res = [a for a in of(p, ALARM) if "evaluationCriteria" in a.inputs]
        assert alarm_res and all(cw.urn in a.dependencies for a in alarm_res)  # alarms wait for their data


def test_cloudwatch_off_creates_no_cloudwatch_side() -> None:
    p = plan("mon-quiet")
    assert not of(p, ALARM) and not of(p, "aws:cloudwatch/dashboard:Dashboard") and not of(p, SCRAPER)
    assert not of(p, "aws:eks/addon:Addon")
    assert not of(p, "kubernetes:networking.k8s.io/v1:NetworkPolicy")  # no managed collector, no opening
    assert p.outputs["monitoring"]["cloudwatchAlarms"] == []


def test_dashboard_shows_every_alarm_and_the_gpus() -> None:
    p = plan("prod")
    body = json.loads(one(p, "aws:cloudwatch/dashboard:Dashboard").inputs["dashboardBody"])
    shown = {arn for w in body["widgets"] if w["type"] == "alarm" for arn in w["properties"]["alarms"]}
    alarm_arns = {a.inputs["name"] for a in of(p, ALARM)}
    assert len(shown) == len(alarm_arns)
    metrics = {m[1] for w in body["widgets"] if w["type"] == "metric" for m in w["properties"]["metrics"]}
    assert {"node_gpu_utilization", "node_gpu_memory_utilization", "cluster_failed_node_count"} <= metrics


# --------------------------------------------------------------------------- encryption, e-mail, tags, policies


@pytest.mark.parametrize("stack", [*REPO, "mon-quiet"])
def test_topic_and_log_groups_are_encrypted_with_a_rotating_key_and_kept(stack: str) -> None:
    p = plan(stack)
    key = monitoring_key(p)
    assert key.inputs["enableKeyRotation"] is True
    topic = one(p, TOPIC)
    assert topic.inputs["kmsMasterKeyId"] == key_arn(p)
    env = stack_yaml(stack).get("servekit:environment", "dev")
    override = stack_yaml(stack)["servekit:monitoring"].get("logRetentionDays")
    want = override or {"dev": 30, "prod": 365}[env]
    policy = json.loads(key.inputs["policy"])
    logs_stmt = next(s for s in policy["Statement"] if s["Sid"] == "CloudWatchLogsUse")
    patterns = logs_stmt["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]
    groups = of(p, "aws:cloudwatch/logGroup:LogGroup")
    for g in groups:
        assert g.inputs["kmsKeyId"] == key_arn(p), g.inputs["name"]
        assert g.inputs["retentionInDays"] == want, g.inputs["name"]
        arn = f"arn:aws:logs:us-east-1:123456789012:log-group:{g.inputs['name']}"
        assert any(fnmatch.fnmatch(arn, pat) for pat in patterns), (arn, patterns)  # the key may serve it
    publishers = next(s for s in policy["Statement"] if s["Sid"] == "PublishToEncryptedTopic")
    assert set(publishers["Principal"]["Service"]) == {"cloudwatch.amazonaws.com", "aps.amazonaws.com"}


def test_topic_policy_lets_only_this_stacks_alarms_and_workspace_publish() -> None:
    for stack in ("dev", "prod"):
        p = plan(stack)
        pol = json.loads(one(p, "aws:sns/topicPolicy:TopicPolicy").inputs["policy"])
        by_sid = {s["Sid"]: s for s in pol["Statement"]}
        cw = by_sid["StackAlarmsPublish"]
        assert cw["Condition"]["ArnLike"]["aws:SourceArn"] == \
            f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:servekit-{stack}-*"
        for name in (a.inputs["name"] for a in of(p, ALARM)):
            assert fnmatch.fnmatch(f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{name}",
                                   cw["Condition"]["ArnLike"]["aws:SourceArn"])
        if stack == "prod":
            ws = one(p, "aws:amp/workspace:Workspace")
            assert by_sid["AmpAlertManagerPublishes"]["Condition"]["ArnEquals"]["aws:SourceArn"] == \
                f"arn:aws:amp:us-east-1:123456789012:workspace/{ws.id}"
        else:
            assert "AmpAlertManagerPublishes" not in by_sid


@pytest.mark.parametrize("stack", [*REPO, "mon-none", "mon-quiet", "mon-airgap"])
def test_each_alert_email_is_subscribed_once(stack: str) -> None:
    p = plan(stack)
    subs = of(p, "aws:sns/topicSubscription:TopicSubscription")
    want = stack_yaml(stack)["servekit:monitoring"].get("alertEmails", [])
    assert sorted(s.inputs["endpoint"] for s in subs) == sorted(want)
    assert {s.inputs["protocol"] for s in subs} <= {"email"}
    assert all(s.inputs["topic"] == topic_arn(p) for s in subs)


@pytest.mark.parametrize("stack", [*REPO, "mon-none", "mon-quiet", "mon-airgap"])
def test_every_taggable_aws_resource_carries_the_base_tags(stack: str) -> None:
    p = plan(stack)
    tags = stack_yaml(stack)["servekit:tags"]
    want = {"owner": tags["owner"], "cost-center": tags["costCenter"],
            "data-classification": tags["dataClassification"], "servekit:stack": stack}
    checked = 0
    for r in mine(p):
        if not r.type.startswith("aws:"):
            continue
        module, cls = r.type.split(":")[1].split("/")[0], r.type.rsplit(":", 1)[1]
        klass = getattr(getattr(aws, module), cls)
        if "tags" not in inspect.signature(klass._internal_init).parameters:
            continue
        assert want.items() <= (r.inputs.get("tags") or {}).items(), (r.type, r.name)
        checked += 1
    assert checked >= 4  # key, topic and the roles at least


def test_monitoring_resources_pass_the_policy_pack() -> None:
    """The repository's CrossGuard pack, with each stack's own config, on the monitoring resources."""
    for path in (REPO_ROOT, REPO_ROOT / "tests" / "policies"):  # what tests/policies/conftest.py does
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from fixtures import PROVIDERS, Res, evaluate
    from pulumi_policy import StackValidationPolicy

    from policies.rules import ALL_POLICIES

    # Stack policies judge a whole stack (e.g. "no egress needs these endpoints"), not this subset.
    stack_level = {pol.name for pol in ALL_POLICIES if isinstance(pol, StackValidationPolicy)}
    for stack in REPO:
        resources = {r.name: Res(r.type, r.inputs) for r in mine(plan(stack)) if r.custom}
        violations = [v for v in evaluate(resources, stack, providers=PROVIDERS[stack]) if v.policy not in stack_level]
        assert violations == [], (stack, violations)


# --------------------------------------------------------------------------- Kubernetes objects


@pytest.mark.parametrize("stack", [*REPO, "mon-none", "mon-quiet", "mon-airgap"])
def test_every_kubernetes_object_passes_strict_1_34_schemas(stack: str) -> None:
    objs = kubernetes_objects(mine(plan(stack))).objects
    assert objs
    for obj in objs:
        assert validate_object(obj, "1.34") == "builtin", (obj["kind"], obj["metadata"]["name"])


def test_grafana_dashboards_are_configmaps_for_the_sidecar_in_cluster_only() -> None:
    p, spec = plan("dev"), spec_of("dev")
    cms = of(p, "kubernetes:core/v1:ConfigMap")
    boards = dashboards(spec)
    assert len(cms) == len(boards) == len(spec.models)
    sidecar = release(p, "kube-prometheus-stack").inputs["values"]["grafana"]["sidecar"]["dashboards"]
    for cm in cms:
        assert cm.inputs["metadata"]["labels"][sidecar["label"]] == sidecar["labelValue"] == "1"
        assert cm.inputs["metadata"]["namespace"] == sidecar["searchNamespace"] == "monitoring"
        (text,) = cm.inputs["data"].values()
        assert text in {dashboard_json(b) for b in boards.values()}
    for stack in ("prod", "mon-none"):
        assert not of(plan(stack), "kubernetes:core/v1:ConfigMap")


def test_managed_collectors_are_admitted_to_vllm_port_only_from_the_node_subnets() -> None:
    p, spec = plan("prod"), spec_of("prod")
    nps = of(p, "kubernetes:networking.k8s.io/v1:NetworkPolicy")
    assert sorted(n.inputs["metadata"]["namespace"] for n in nps) == sorted(m.name for m in spec.models)
    node_cidrs = sorted(r.inputs["cidrBlock"] for r in p.of_type("aws:ec2/subnet:Subnet")
                        if r.name.startswith("servekit-network-nodes"))
    for np in nps:
        (rule,) = np.inputs["spec"]["ingress"]
        assert sorted(peer["ipBlock"]["cidr"] for peer in rule["from"]) == node_cidrs
        assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
        assert np.inputs["spec"]["policyTypes"] == ["Ingress"]
        # the namespace comes from the serving side's output: the policy waits for the Namespace
        ns = next(r for r in p.of_type("kubernetes:core/v1:Namespace")
                  if r.inputs["metadata"]["name"] == np.inputs["metadata"]["namespace"])
        assert ns.urn in np.dependencies
    rbac = one(p, "kubernetes:rbac.authorization.k8s.io/v1:ClusterRoleBinding")
    assert rbac.inputs["subjects"] == [{"kind": "User", "name": "aps-collector-user",
                                        "apiGroup": "rbac.authorization.k8s.io"}]


def test_alertmanager_in_cluster_publishes_to_the_topic_with_a_scoped_pod_identity() -> None:
    p = plan("dev")
    values = release(p, "kube-prometheus-stack").inputs["values"]["alertmanager"]
    (recv,) = values["config"]["receivers"]
    assert recv["sns_configs"][0]["topic_arn"] == topic_arn(p)
    assoc = one(p, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert (assoc.inputs["namespace"], assoc.inputs["serviceAccount"]) == ("monitoring",
                                                                          values["serviceAccount"]["name"])
    pol = json.loads(one(p, "aws:iam/rolePolicy:RolePolicy").inputs["policy"])
    actions = {a for s in pol["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    assert actions == {"sns:Publish", "kms:GenerateDataKey*", "kms:Decrypt"}
    resources = {s["Resource"] for s in pol["Statement"]}
    assert resources == {topic_arn(p), key_arn(p)}
    assert p.outputs["monitoring"]["prometheusAddress"] == "http://prometheus-operated.monitoring.svc:9090"


# --------------------------------------------------------------------------- the stack-file surface


def test_monitoring_spec_defaults_and_refusals() -> None:
    assert MonitoringSpec().prometheus.value == "in-cluster" and MonitoringSpec().cloudwatch is True
    with pytest.raises(ValueError, match="not an e-mail address"):
        MonitoringSpec(alert_emails=["ops@localhost"])
    with pytest.raises(ValueError, match="repeated"):
        MonitoringSpec(alert_emails=["Ops@example.com", "ops@example.com"])
    with pytest.raises(ValueError, match="storageGib only applies"):
        MonitoringSpec.model_validate({"prometheus": "amp", "storageGib": 40})
    with pytest.raises(ValueError, match="not a CloudWatch Logs retention"):
        MonitoringSpec.model_validate({"logRetentionDays": 45})
    with pytest.raises(ValueError, match="without any alerting"):
        MonitoringSpec.model_validate({"prometheus": "none", "cloudwatch": False})
    with pytest.raises(ValueError):
        MonitoringSpec.model_validate({"prometheus": "victoria"})


def test_egress_none_defaults_to_amp_and_refuses_in_cluster(tmp_path: Path) -> None:
    net = {"vpcCidr": "10.82.0.0/16", "azCount": 2, "egress": "none"}
    write_stack(tmp_path, "airgap-default", config(network=net, models=[model(source="s3")]))
    assert resolve_stack("airgap-default", stacks_dir=tmp_path).spec.monitoring.prometheus.value == "amp"
    write_stack(tmp_path, "airgap-incluster", config(network=net, models=[model(source="s3")],
                                                     monitoring={"prometheus": "in-cluster"}))
    with pytest.raises(UserError, match="cannot be in-cluster") as err:
        resolve_stack("airgap-incluster", stacks_dir=tmp_path)
    assert "Pulumi.airgap-incluster.yaml" in str(err.value)


def test_autoscaling_needs_the_in_cluster_prometheus(tmp_path: Path) -> None:
    auto = model(replicas=2, autoscaling={"minReplicas": 1, "maxReplicas": 3})
    write_stack(tmp_path, "auto-amp", config(models=[auto], monitoring={"prometheus": "amp"}))
    with pytest.raises(UserError, match="autoscaling reads the queue"):
        resolve_stack("auto-amp", stacks_dir=tmp_path)
    write_stack(tmp_path, "auto-ok", config(models=[auto]))
    assert resolve_stack("auto-ok", stacks_dir=tmp_path).spec.models[0].autoscaling is not None


def test_a_typo_in_the_monitoring_block_names_the_key(tmp_path: Path) -> None:
    write_stack(tmp_path, "typo", config(monitoring={"promethues": "amp"}))
    with pytest.raises(UserError) as err:
        resolve_stack("typo", stacks_dir=tmp_path)
    assert "servekit:monitoring" in (err.value.path or "") and "promethues" in str(err.value)


# --------------------------------------------------------------------------- structural checks (no CRD offline)


def check_monitor(obj: dict[str, Any], endpoints_key: str) -> None:
    """prometheus-operator v1 PodMonitor/ServiceMonitor as the chart's additional*Monitors take them."""
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", obj["name"])
    assert set(obj["selector"]) <= {"matchLabels", "matchExpressions"} and obj["selector"]
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in obj["selector"]["matchLabels"].items())
    assert set(obj["namespaceSelector"]) <= {"matchNames", "any"}
    eps = obj[endpoints_key]
    assert isinstance(eps, list) and eps
    for ep in eps:
        assert set(ep) <= {"port", "path", "interval", "honorLabels", "scheme", "scrapeTimeout"}
        assert isinstance(ep["port"], str) and ep["path"].startswith("/")
        assert re.fullmatch(r"\d+[smh]", ep["interval"]) and isinstance(ep["honorLabels"], bool)


def check_prometheus_rule_spec(spec: dict[str, Any]) -> None:
    names = [g["name"] for g in spec["groups"]]
    assert len(names) == len(set(names))
    for g in spec["groups"]:
        assert set(g) <= {"name", "interval", "rules", "limit", "partial_response_strategy"}
        for r in g["rules"]:
            assert ("record" in r) != ("alert" in r), r
            assert set(r) <= {"record", "alert", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert isinstance(r["expr"], str) and r["expr"]
            for k in ("labels", "annotations"):
                assert all(isinstance(v, str) for v in r.get(k, {}).values())
            if "for" in r:
                assert re.fullmatch(r"\d+[smhd]", r["for"])


def test_alertmanager_configs_pass_amtool(tmp_path: Path) -> None:
    """The in-cluster Alertmanager's config (release values) and AMP's (inside its definition document)."""
    amtool = shutil.which("amtool")
    if amtool is None:
        pytest.fail("amtool not installed: apt-get install prometheus-alertmanager (scripts/test.sh does)")
    configs = {
        "dev": release(plan("dev"), "kube-prometheus-stack").inputs["values"]["alertmanager"]["config"],
        "prod": yaml.safe_load(yaml.safe_load(one(plan("prod"), "aws:amp/alertManagerDefinition:AlertManagerDefinition")
                                              .inputs["definition"])["alertmanager_config"]),
    }
    broken = json.loads(json.dumps(configs["dev"]))
    broken["route"]["receiver"] = "nobody"  # the check can fail: a route to an undefined receiver
    for name, cfg in {**configs, "broken": broken}.items():
        f = tmp_path / f"{name}.yaml"
        f.write_text(yaml.safe_dump(cfg))
        out = subprocess.run([amtool, "check-config", str(f)], capture_output=True, text=True, check=False)
        assert (out.returncode == 0) is (name != "broken"), (name, out.stdout + out.stderr)
