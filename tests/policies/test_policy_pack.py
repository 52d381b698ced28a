"""The assembled pack, run the way the Pulumi CLI runs it: `python policies` in a subprocess, spoken to over gRPC.

This is the only test that executes policies/__main__.py (it blocks forever by design, so it runs in
a child process we start and stop ourselves). It checks what the engine sees: the policy metadata
from GetAnalyzerInfo, per-stack config through Configure, and verdicts from Analyze/AnalyzeStack,
including the engine's own handling of a value that is unknown during preview.
"""

from __future__ import annotations

from collections.abc import Mapping
from copy import deepcopy
from typing import Any

import pytest
from fixtures import GOOD, PROVIDERS, Res, Stack, urn
from google.protobuf import empty_pb2, json_format, struct_pb2
from pulumi.runtime.proto import analyzer_pb2 as pb
from pulumi.runtime.proto import analyzer_pb2_grpc
from pulumi_policy import EnforcementLevel, StackValidationPolicy
from pulumi_policy.proxy import UNKNOWN_BOOLEAN_VALUE

from policies.rules import ALL_POLICIES, load_pack_config, resolve

LEVEL = {EnforcementLevel.ADVISORY: pb.ADVISORY, EnforcementLevel.MANDATORY: pb.MANDATORY,
         EnforcementLevel.DISABLED: pb.DISABLED, EnforcementLevel.REMEDIATE: pb.REMEDIATE}


def _struct(values: Mapping[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    json_format.ParseDict(dict(values), s)
    return s


def configure(stub: analyzer_pb2_grpc.AnalyzerStub, stack: str) -> None:
    """What the CLI sends for `--policy-pack-config policies/config/<stack>.json` (after reconciling it)."""
    resolved = resolve(ALL_POLICIES, load_pack_config(stack))
    stub.Configure(pb.ConfigureAnalyzerRequest(policyConfig={
        name: pb.PolicyConfig(enforcementLevel=LEVEL[r.enforcement], properties=_struct(r.config))
        for name, r in resolved.items()}))


def _provider(kind: str, r: Res) -> pb.AnalyzerProviderResource | None:
    package = r.type.split(":")[0]
    props = PROVIDERS[kind].get(package)
    if props is None:
        return None
    return pb.AnalyzerProviderResource(type=f"pulumi:providers:{package}", properties=_struct(props),
                                       urn=f"urn:pulumi:{kind}::servekit::pulumi:providers:{package}::default",
                                       name="default")


def analyze(stub: analyzer_pb2_grpc.AnalyzerStub, kind: str, name: str, r: Res) -> list[pb.AnalyzeDiagnostic]:
    request = pb.AnalyzeRequest(type=r.type, properties=_struct(r.props), urn=urn(kind, r, name), name=name,
                                options=pb.AnalyzerResourceOptions(), provider=_provider(kind, r))
    return list(stub.Analyze(request).diagnostics)


def analyze_stack(stub: analyzer_pb2_grpc.AnalyzerStub, kind: str, stack: Stack) -> list[pb.AnalyzeDiagnostic]:
    resources = [
        pb.AnalyzerResource(
            type=r.type, properties=_struct(r.props), urn=urn(kind, r, name), name=name,
            options=pb.AnalyzerResourceOptions(), provider=_provider(kind, r),
            dependencies=[urn(kind, stack[t], t) for ts in r.deps.values() for t in ts],
            propertyDependencies={prop: pb.AnalyzerPropertyDependencies(urns=[urn(kind, stack[t], t) for t in ts])
                                  for prop, ts in r.deps.items()})
        for name, r in stack.items()]
    return list(stub.AnalyzeStack(pb.AnalyzeStackRequest(resources=resources)).diagnostics)


def test_analyzer_info_carries_every_policy_and_its_metadata(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    info = analyzer.GetAnalyzerInfo(empty_pb2.Empty())
    assert info.name == "servekit" and info.supportsConfig
    by_name = {p.name: p for p in info.policies}
    assert set(by_name) == {p.name for p in ALL_POLICIES}
    for p in ALL_POLICIES:
        got = by_name[p.name]
        assert got.severity != pb.POLICY_SEVERITY_UNSPECIFIED
        assert got.framework.name and got.framework.reference and got.remediation_steps and got.url
        assert got.enforcementLevel == LEVEL[p.enforcement_level or EnforcementLevel.ADVISORY]
        expected_type = pb.POLICY_TYPE_STACK if isinstance(p, StackValidationPolicy) else pb.POLICY_TYPE_RESOURCE
        assert got.policy_type == expected_type


@pytest.mark.parametrize("kind", ["dev", "prod", "regulated"])
def test_good_stacks_pass_through_the_engine_interface(analyzer: analyzer_pb2_grpc.AnalyzerStub, kind: str) -> None:
    configure(analyzer, kind)
    for name, r in GOOD[kind].items():
        assert analyze(analyzer, kind, name, r) == [], name
    assert analyze_stack(analyzer, kind, GOOD[kind]) == []


def test_violation_with_stack_enforcement_and_severity(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, "prod")
    cluster = deepcopy(GOOD["prod"]["cluster"])
    cluster.props["vpcConfig"]["endpointPublicAccess"] = True
    [d] = analyze(analyzer, "prod", "cluster", cluster)
    assert (d.policyName, d.enforcementLevel, d.severity) == (
        "eks-endpoint-private", pb.MANDATORY, pb.POLICY_SEVERITY_CRITICAL)


def test_dev_keeps_the_default_advisory_level(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, "dev")
    sg = deepcopy(GOOD["dev"]["default-sg"])
    sg.props["ingress"] = [{"protocol": "-1", "fromPort": 0, "toPort": 0, "self": True}]
    [d] = analyze(analyzer, "dev", "default-sg", sg)
    assert (d.policyName, d.enforcementLevel) == ("default-security-group-closed", pb.ADVISORY)


def test_unknown_at_preview_becomes_the_engines_advisory_note(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, "prod")
    cluster = deepcopy(GOOD["prod"]["cluster"])
    cluster.props["vpcConfig"]["endpointPublicAccess"] = UNKNOWN_BOOLEAN_VALUE
    [d] = analyze(analyzer, "prod", "cluster", cluster)
    assert d.policyName == "eks-endpoint-private" and d.enforcementLevel == pb.ADVISORY
    assert "during preview" in d.message and ".vpcConfig.endpointPublicAccess" in d.message


def test_stack_policy_through_the_engine_interface(analyzer: analyzer_pb2_grpc.AnalyzerStub) -> None:
    configure(analyzer, "prod")
    stack = deepcopy(GOOD["prod"])
    del stack["sla-gate"]
    stack["gpu-contracts"].deps["subnetIds"] = ["public-0"]
    found = {(d.policyName, d.urn.rsplit("::", 1)[-1]) for d in analyze_stack(analyzer, "prod", stack)}
    assert found == {("sla-gate-required", ""), ("eks-nodes-private-subnets", "gpu-contracts")}
