"""The offline audit (servekit/audit.py): the engine's view of a plan, the repository's stacks, seeded violations.

Seeded insecure variants come two ways. Where the stack file can express the flaw (a public or
over-broad API endpoint, a non-commercial model in prod, a tiny budget) a temporary stack file is
planned. Where the kit's spec refuses it or the components never build it (nodes in a public subnet,
an unpinned image, a token literal in a container env, an unencrypted launch-template volume) the
recorded Plan is mutated and handed to ``audit_plan``, which takes any Plan for exactly this reason.
Each variant must fail with exactly the policy named, and nothing else.

``test_matches_the_pack_over_grpc`` runs the assembled pack the way the Pulumi CLI does (``python
policies`` in a child process, spoken to over gRPC) with the same resources, and checks the
diagnostics equal the in-process audit's: the proof that the audit evaluates "as the engine would".
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import importlib.metadata
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as pb
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE

from servekit.audit import (
    ALL_POLICIES,
    CONFIG_DIR,
    PACK_DIR,
    AuditReport,
    EngineResource,
    audit_plan,
    audit_stack,
    default_provider_name,
    engine_resources,
    load_policy_config,
    pack_info,
    resolve,
    with_stack_budget,
)
from servekit.catalog import REPO_ROOT
from servekit.errors import UserError
from servekit.offline import Plan, PlanResource, plan_stack

STACKS = ("dev", "prod", "regulated")
DEPLOYMENT = "kubernetes:apps/v1:Deployment"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
SUBNET = "aws:ec2/subnet:Subnet"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
CLUSTER = "aws:eks/cluster:Cluster"


@functools.cache
def _plan(stack: str) -> Plan:
    return plan_stack(stack)


def fresh(stack: str) -> Plan:
    """A private copy of the repository stack's plan (planned once per test session)."""
    return copy.deepcopy(_plan(stack))


def config(stack: str) -> dict[str, Any]:
    return load_policy_config(CONFIG_DIR / f"{stack}.json")


def audit(plan: Plan, pack_config: Mapping[str, Any] | None = None, **kw: Any) -> AuditReport:
    return audit_plan(plan, pack_config if pack_config is not None else config(plan.stack), **kw)


def mutate(plan: Plan, match: Callable[[PlanResource], bool], change: Callable[[dict[str, Any]], None]) -> Plan:
    """A copy of ``plan`` whose matching resources' inputs went through ``change`` (at least one must match)."""
    out: list[PlanResource] = []
    hits = 0
    for r in plan.resources:
        if match(r):
            inputs = copy.deepcopy(r.inputs)
            change(inputs)
            r = dataclasses.replace(r, inputs=inputs)
            hits += 1
        out.append(r)
    assert hits, "the mutation matched no resource"
    return dataclasses.replace(plan, resources=out)


def failed(report: AuditReport) -> set[str]:
    return {v.policy for v in report.mandatory_violations}


def write_stack(directory: Path, stack: str, change: Callable[[dict[str, Any]], None]) -> Path:
    """stacks/Pulumi.<stack>.yaml, changed, written to ``directory`` (planned with stacks_dir=directory)."""
    raw = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    change(raw["config"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return directory


# --------------------------------------------------------------------------- the engine's view of the plan


def test_urns_are_the_engines_not_the_mock_monitors() -> None:
    plan = _plan("dev")
    res = {r.urn: r for r in engine_resources(plan)}
    cluster = next(r for r in res.values() if r.type == CLUSTER)
    # Full parent type chain, root stack type left out (pulumi/pulumi Deployment.generateURN).
    assert cluster.urn == ("urn:pulumi:dev::servekit::servekit:platform:Platform$servekit:cluster:Cluster"
                           "$aws:eks/cluster:Cluster::servekit-cluster-eks")
    mock = next(r for r in plan.resources if r.type == CLUSTER)
    assert mock.urn != cluster.urn  # the mock monitor names only the immediate parent's type
    platform = res["urn:pulumi:dev::servekit::servekit:platform:Platform::servekit"]
    assert platform.parent == "urn:pulumi:dev::servekit::pulumi:pulumi:Stack::servekit-dev"
    for r in res.values():
        assert r.parent is None or r.parent in res, r.urn
        assert all(d in res for d in r.dependencies), r.urn
        assert r.provider is None or r.provider in res, r.urn


def test_providers_explicit_and_default() -> None:
    res = engine_resources(_plan("dev"), {"aws": {"region": "us-east-1"}})
    by_urn = {r.urn: r for r in res}
    version = importlib.metadata.version("pulumi_aws")
    default = by_urn[f"urn:pulumi:dev::servekit::pulumi:providers:aws::{default_provider_name(version)}"]
    assert default.inputs == {"region": "us-east-1", "version": version}
    aws = [r for r in res if r.type.startswith("aws:")]
    assert aws and all(r.provider == default.urn for r in aws)
    deployment = next(r for r in res if r.type == DEPLOYMENT)
    assert deployment.provider is not None
    k8s = by_urn[deployment.provider]
    assert k8s.type == "pulumi:providers:kubernetes" and "kubeconfig" in k8s.inputs
    components = [r for r in res if not r.custom]
    assert components and all(r.provider is None for r in components)
    assert default_provider_name("7.51.1") == "default_7_51_1"
    assert default_provider_name("1.2.3-alpha.1+build5") == "default_1_2_3_alpha_1_build5"
    assert default_provider_name(None) == "default"


def test_stack_policies_see_state_with_ids_resource_policies_see_inputs() -> None:
    res = engine_resources(_plan("dev"))
    ng = next(r for r in res if r.type == NODE_GROUP)
    assert "id" not in ng.inputs and ng.outputs["id"] == ng.id
    assert ng.outputs["arn"].startswith("arn:aws:eks:us-east-1:123456789012:")  # the mocks' outputs
    subnet_ids = {r.outputs["id"] for r in res if r.type == SUBNET}
    assert set(ng.inputs["subnetIds"]) <= subnet_ids  # what lets eks-nodes-private-subnets match by value


# --------------------------------------------------------------------------- the repository's stacks


@pytest.mark.parametrize("stack", STACKS)
def test_repository_stacks_pass_every_mandatory_policy(stack: str) -> None:
    report = audit(fresh(stack))
    assert report.mandatory_violations == [], [(v.policy, v.resource_name, v.message) for v in report.violations]
    assert report.exit_code == 0
    assert len(report.policies) == len(ALL_POLICIES) == 34
    assert not [p.name for p in report.policies if p.status in ("unknown", "fail")]
    # Not vacuous: the policies that matter for every stack actually inspected its resources.
    checked = {p.name: len(p.checked) for p in report.policies}
    for name in ("eks-endpoint-private", "eks-nodes-private-subnets", "ebs-encrypted", "k8s-image-pinned",
                 "k8s-no-inline-secrets", "model-license-allowed", "monthly-budget", "required-tags"):
        assert checked[name] >= 1, name
    assert checked["required-tags"] > 20


def test_regulated_checks_the_no_egress_and_s3_controls() -> None:
    report = audit(fresh("regulated"))
    status = {p.name: (p.status, len(p.checked)) for p in report.policies}
    for name in ("s3-encrypted-kms", "s3-public-access-blocked", "s3-tls-only", "vpc-endpoints-for-private-egress"):
        assert status[name][0] == "pass" and status[name][1] >= 1, name
    assert status["no-egress-gateways"] == ("pass", 0)  # nothing it forbids exists


# --------------------------------------------------------------------------- seeded violations (plan mutations)


def _is_public_subnet(r: PlanResource) -> bool:
    return r.type == SUBNET and (r.inputs.get("tags") or {}).get("kubernetes.io/role/elb") == "1"


def test_node_group_placed_in_a_public_subnet() -> None:
    plan = fresh("dev")
    public = next(r for r in plan.resources if _is_public_subnet(r))
    public_id = next(e.id for e in engine_resources(plan) if e.type == SUBNET and e.name == public.name)

    def use_public(inputs: dict[str, Any]) -> None:
        inputs["subnetIds"] = [*inputs["subnetIds"], public_id]

    report = audit(mutate(plan, lambda r: r.type == NODE_GROUP and "gpu" in r.name, use_public))
    assert failed(report) == {"eks-nodes-private-subnets"}
    (v,) = report.mandatory_violations
    assert v.resource_type == NODE_GROUP and "gpu" in v.resource_name and public.name in v.message


def test_node_subnet_that_maps_public_ips() -> None:
    def public_ips(inputs: dict[str, Any]) -> None:
        inputs["mapPublicIpOnLaunch"] = True

    node_subnet = "servekit-network-nodes-us-east-1a"
    report = audit(mutate(fresh("prod"), lambda r: r.type == SUBNET and r.name == node_subnet, public_ips))
    assert failed(report) == {"eks-nodes-private-subnets"}
    assert all(node_subnet in v.message for v in report.mandatory_violations)
    assert {v.resource_type for v in report.mandatory_violations} == {NODE_GROUP}


def test_unpinned_image() -> None:
    def latest(inputs: dict[str, Any]) -> None:
        inputs["spec"]["template"]["spec"]["containers"][0]["image"] = "vllm/vllm-openai:latest"

    report = audit(mutate(fresh("prod"), lambda r: r.type == DEPLOYMENT and r.name.startswith("contracts"), latest))
    assert failed(report) == {"k8s-image-pinned"}
    assert "vllm/vllm-openai:latest" in report.mandatory_violations[0].message


def test_literal_token_in_a_container_env() -> None:
    token = "hf_" + "Q7xZ" * 9  # shaped like a Hugging Face user access token

    def inline(inputs: dict[str, Any]) -> None:
        inputs["spec"]["template"]["spec"]["containers"][0].setdefault("env", []).append(
            {"name": "HF_TOKEN", "value": token})

    report = audit(mutate(fresh("dev"), lambda r: r.type == DEPLOYMENT, inline))
    assert failed(report) == {"k8s-no-inline-secrets"}
    assert report.mandatory_violations[0].severity == "critical"


def test_unencrypted_launch_template_volume() -> None:
    def unencrypted(inputs: dict[str, Any]) -> None:
        for mapping in inputs["blockDeviceMappings"]:
            mapping["ebs"]["encrypted"] = "false"

    report = audit(mutate(fresh("regulated"), lambda r: r.type == LAUNCH_TEMPLATE and "gpu" in r.name, unencrypted))
    assert failed(report) == {"ebs-encrypted"}


def test_an_unknown_value_is_the_engines_advisory_note_not_a_pass_or_a_violation() -> None:
    def unknown(inputs: dict[str, Any]) -> None:
        inputs["vpcConfig"]["endpointPublicAccess"] = UNKNOWN_BOOLEAN_VALUE

    report = audit(mutate(fresh("prod"), lambda r: r.type == CLUSTER, unknown))
    endpoint = next(p for p in report.policies if p.name == "eks-endpoint-private")
    assert endpoint.status == "unknown" and report.violations == []
    assert endpoint.notes == ["can't run policy 'eks-endpoint-private' from policy pack 'servekit@v0.1.0' during "
                              "preview: boolean value at .vpcConfig.endpointPublicAccess can't be known during preview"]


# --------------------------------------------------------------------------- seeded violations (stack files)


def test_public_endpoint_in_prod(tmp_path: Path) -> None:
    def public(cfg: dict[str, Any]) -> None:
        cfg["servekit:cluster"].update(endpointPublic=True, publicAccessCidrs=["203.0.113.0/24"])

    report = audit_stack("prod", write_stack(tmp_path, "prod", public))
    assert failed(report) == {"eks-endpoint-private"}
    assert "requires a private-only endpoint" in report.mandatory_violations[0].message


def test_over_broad_public_endpoint_in_dev(tmp_path: Path) -> None:
    # 0.0.0.0/0 never gets this far (the stack spec refuses it); dev's policy refuses anything broader than /16.
    def broad(cfg: dict[str, Any]) -> None:
        cfg["servekit:cluster"]["publicAccessCidrs"] = ["10.0.0.0/8"]

    report = audit_stack("dev", write_stack(tmp_path, "dev", broad))
    assert failed(report) == {"eks-endpoint-private"}
    assert "'10.0.0.0/8' is broader than /16" in report.mandatory_violations[0].message


def test_non_commercial_model_in_prod(tmp_path: Path) -> None:
    def command_r_plus(cfg: dict[str, Any]) -> None:
        cfg["servekit:models"][1] = {
            "name": "extract", "model": "command-r-plus", "quantization": "gptq", "maxContext": 8192,
            "replicas": 1, "purchase": {"option": "reserved-1y"},
            "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 8, "workload": "chat"}}

    report = audit_stack("prod", write_stack(tmp_path, "prod", command_r_plus))
    assert failed(report) == {"model-license-allowed"}
    assert {v.resource_name for v in report.mandatory_violations} == {"extract-deployment"}
    assert any("CC-BY-NC-4.0" in v.message for v in report.mandatory_violations)


def test_over_budget(tmp_path: Path) -> None:
    def tiny(cfg: dict[str, Any]) -> None:
        cfg["servekit:budgetMonthlyUsd"] = 1000

    stacks = write_stack(tmp_path / "stacks", "prod", tiny)
    pack_config = config("prod")
    del pack_config["monthly-budget"]  # the budget's home is then the stack file
    policy_config = tmp_path / "prod.json"
    policy_config.write_text(json.dumps(pack_config), encoding="utf-8")
    report = audit_stack("prod", stacks, policy_config=policy_config)
    assert failed(report) == {"monthly-budget"}
    (v,) = report.mandatory_violations
    assert v.resource_type == "pulumi:pulumi:Stack"
    assert v.urn == "urn:pulumi:prod::servekit::pulumi:pulumi:Stack::servekit-prod"
    assert "exceeds the budget $1,000" in v.message
    assert report.warnings == []


# --------------------------------------------------------------------------- the budget's one home


def test_budget_comes_from_the_stack_file_when_the_policy_config_leaves_it_out() -> None:
    cfg, warnings = with_stack_budget({"all": "mandatory"}, 5000, config_file="c.json", stack_file="s.yaml")
    assert cfg["monthly-budget"] == {"budgetMonthlyUsd": 5000} and warnings == []
    cfg, warnings = with_stack_budget({"monthly-budget": "advisory"}, 5000, config_file="c.json", stack_file="s.yaml")
    assert cfg["monthly-budget"] == {"enforcementLevel": "advisory", "budgetMonthlyUsd": 5000}
    assert resolve(ALL_POLICIES, cfg)["monthly-budget"].config == {"budgetMonthlyUsd": 5000}


def test_two_different_budgets_are_reported_and_the_policy_configs_is_enforced() -> None:
    given = {"monthly-budget": {"budgetMonthlyUsd": 60000}}
    cfg, warnings = with_stack_budget(given, 90000, config_file="c.json", stack_file="s.yaml")
    assert cfg == given
    assert warnings == ["two budgets: c.json sets monthly-budget.budgetMonthlyUsd=60000 (enforced, also by pulumi "
                        "preview) but s.yaml sets servekit:budgetMonthlyUsd=90000 (used by servekit cost); make them "
                        "agree"]
    assert with_stack_budget(given, 60000, config_file="c.json", stack_file="s.yaml") == (given, [])
    assert with_stack_budget({}, None, config_file="c.json", stack_file="s.yaml") == ({}, [])


# --------------------------------------------------------------------------- enforcement levels and policy outcomes


def _public_dev() -> Plan:
    def public(inputs: dict[str, Any]) -> None:
        inputs["vpcConfig"]["publicAccessCidrs"] = ["10.0.0.0/8"]

    return mutate(fresh("dev"), lambda r: r.type == CLUSTER, public)


def _level(stack: str, policy: str, level: str) -> dict[str, Any]:
    """The stack's policy config with ``policy`` at ``level`` (its settings kept)."""
    cfg = config(stack)
    entry = cfg.get(policy, {})
    cfg[policy] = {**(entry if isinstance(entry, dict) else {}), "enforcementLevel": level}
    return cfg


def test_enforcement_overrides_are_honoured() -> None:
    plan = _public_dev()
    advisory = audit(plan, _level("dev", "eks-endpoint-private", "advisory"))
    assert advisory.exit_code == 0 and advisory.mandatory_violations == []
    assert [(v.policy, v.enforcement) for v in advisory.violations] == [("eks-endpoint-private", "advisory")]
    disabled = audit(plan, _level("dev", "eks-endpoint-private", "disabled"))
    assert disabled.violations == []
    assert next(p for p in disabled.policies if p.name == "eks-endpoint-private").status == "disabled"
    everything = audit(fresh("dev"), {**config("dev"), "all": "mandatory"})
    assert {p.enforcement for p in everything.policies} == {"mandatory"}
    default_sg = next(p for p in everything.policies if p.name == "default-security-group-closed")
    assert default_sg.default_enforcement == "advisory"


def test_remediate_is_reported_as_mandatory() -> None:
    report = audit(_public_dev(), _level("dev", "eks-endpoint-private", "remediate"))
    assert [(v.policy, v.enforcement) for v in report.violations] == [("eks-endpoint-private", "mandatory")]
    assert report.exit_code == 1


def test_async_validators_and_not_applicable_run_as_the_analyzer_runs_them() -> None:
    seen: list[str] = []

    async def async_check(args: ResourceValidationArgs, report: ReportViolation) -> None:
        if args.resource_type == CLUSTER:
            seen.append(args.urn)
            report(f"endpoint public: {args.props['vpcConfig']['endpointPublicAccess']}", None)

    def never(args: ResourceValidationArgs, report: ReportViolation) -> None:
        args.not_applicable("no such thing here")

    pack = [
        *ALL_POLICIES,
        ResourceValidationPolicy("async-check", "An async validator.", async_check, EnforcementLevel.MANDATORY),
        ResourceValidationPolicy("never-applies", "Says it does not apply.", never, EnforcementLevel.MANDATORY),
    ]
    report = audit(fresh("dev"), {}, policies=pack)
    assert len(seen) == 1
    async_v = [v for v in report.violations if v.policy == "async-check"]
    assert [v.message for v in async_v] == ["endpoint public: True"]
    never_applies = next(p for p in report.policies if p.name == "never-applies")
    assert never_applies.status == "not-applicable" and never_applies.notes == ["no such thing here"]


def test_unknown_policy_in_a_config_file_is_refused(tmp_path: Path) -> None:
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps({"eks-endpoint-privat": "advisory"}), encoding="utf-8")
    with pytest.raises(UserError, match="unknown policy name"):
        load_policy_config(bad)


def test_pack_metadata_is_read_without_running_the_pack() -> None:
    info = pack_info()
    assert info.name == "servekit" and info.version == yaml.safe_load(
        (PACK_DIR / "PulumiPolicy.yaml").read_text(encoding="utf-8"))["version"]
    assert "gpu" in info.tags and info.description


# --------------------------------------------------------------------------- the same verdicts as the real analyzer

LEVEL = {EnforcementLevel.ADVISORY: pb.ADVISORY, EnforcementLevel.MANDATORY: pb.MANDATORY,
         EnforcementLevel.DISABLED: pb.DISABLED, EnforcementLevel.REMEDIATE: pb.REMEDIATE}
LEVEL_NAME = {pb.ADVISORY: "advisory", pb.MANDATORY: "mandatory"}


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(copy.deepcopy(dict(values)), s)
    return s


def _request_parts(r: EngineResource, by_urn: Mapping[str, EngineResource], props: Mapping[str, Any]) -> dict[str, Any]:
    parts: dict[str, Any] = {"type": r.type, "properties": _struct(props), "urn": r.urn, "name": r.name,
                             "options": pb.AnalyzerResourceOptions(parent=r.parent or "")}
    if r.provider:
        p = by_urn[r.provider]
        parts["provider"] = pb.AnalyzerProviderResource(type=p.type, properties=_struct(p.inputs), urn=p.urn,
                                                        name=p.name)
    return parts


def test_matches_the_pack_over_grpc(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    """Every diagnostic of the real analyzer equals one of the audit's, for a plan seeded with several flaws."""
    plan = _public_dev()
    plan = mutate(plan, lambda r: r.type == DEPLOYMENT, lambda i: i["spec"]["template"]["spec"]["containers"][0]
                  .update(image="vllm/vllm-openai"))
    pack_config = {**_level("dev", "k8s-image-pinned", "advisory"), "monthly-budget": {"budgetMonthlyUsd": 10.0}}
    report = audit(plan, pack_config, provider_config={"aws": {"region": plan.region}})
    resolved = resolve(ALL_POLICIES, pack_config)
    analyzer.Configure(pb.ConfigureAnalyzerRequest(policyConfig={
        name: pb.PolicyConfig(enforcementLevel=LEVEL[r.enforcement], properties=_struct(r.config))
        for name, r in resolved.items()}))
    resources = engine_resources(plan, {"aws": {"region": plan.region}})
    by_urn = {r.urn: r for r in resources}
    root = next(r.urn for r in resources if r.type == "pulumi:pulumi:Stack")
    got: set[tuple[str, str, str, str]] = set()
    for r in resources:
        for d in analyzer.Analyze(pb.AnalyzeRequest(**_request_parts(r, by_urn, r.inputs))).diagnostics:
            got.add((d.policyName, r.urn, LEVEL_NAME[d.enforcementLevel], d.message))
    stack = [pb.AnalyzerResource(**_request_parts(r, by_urn, r.outputs), parent=r.parent or "",
                                 dependencies=list(r.dependencies)) for r in resources]
    for d in analyzer.AnalyzeStack(pb.AnalyzeStackRequest(resources=stack)).diagnostics:
        got.add((d.policyName, d.urn if d.urn in by_urn else root, LEVEL_NAME[d.enforcementLevel], d.message))
    descriptions = {p.name: p.description for p in ALL_POLICIES}
    expected = {(v.policy, v.urn, v.enforcement, f"{descriptions[v.policy]}\n{v.message}") for v in report.violations}
    assert {g[0] for g in got} == {"eks-endpoint-private", "k8s-image-pinned", "monthly-budget"}
    assert got == expected
