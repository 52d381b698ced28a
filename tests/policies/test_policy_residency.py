"""Specs for policies/rules/residency.py: regional resources only in the stack's allowed regions."""

from __future__ import annotations

from copy import deepcopy

from fixtures import (
    GOOD,
    PROVIDERS,
    Res,
    args_of,
    aws_provider,
    evaluate,
    policy,
    provider_for,
    resource_args,
    run,
    violated,
)

NAME = "region-allowed"


def test_provider_in_a_foreign_region_flags_every_regional_resource() -> None:
    providers = deepcopy(PROVIDERS["regulated"])
    providers["aws"]["region"] = "eu-west-1"
    found = evaluate(GOOD["regulated"], "regulated", providers=providers)
    assert {v.policy for v in found} == {NAME}
    aws_resources = {n for n, r in GOOD["regulated"].items() if r.type.startswith("aws:")}
    assert {v.resource for v in found} == aws_resources  # every AWS resource, no Kubernetes object


def test_per_resource_region_overrides_the_provider() -> None:
    s = deepcopy(GOOD["prod"])
    s["model-store"].props["region"] = "eu-central-1"
    [v] = evaluate(s, "prod")
    assert (v.policy, v.resource) == (NAME, "model-store") and "eu-central-1" in v.message


def test_availability_zone_outside_the_region() -> None:
    s = deepcopy(GOOD["regulated"])
    s["model-cache"].props["availabilityZone"] = "us-west-2a"
    assert violated(s, "regulated") == {NAME}
    wider = {"allowedRegions": ["us-east-1", "us-west-2"]}  # prod's list
    assert run(policy(NAME), args_of("regulated", "model-cache", stack=s, config=wider)) == []


def test_unpinned_region_is_refused() -> None:
    provider = provider_for("aws:s3/bucket:Bucket", {"aws": {"skipCredentialsValidation": "false"}})
    args = resource_args("aws:s3/bucket:Bucket", {}, {"allowedRegions": ["us-east-1"]}, provider)
    [message] = run(policy(NAME), args)
    assert "not pinned" in message


def test_global_services_and_empty_allowlist_are_not_judged() -> None:
    provider = provider_for("aws:iam/role:Role", {"aws": aws_provider("eu-west-1")})
    assert run(policy(NAME), resource_args("aws:iam/role:Role", {}, {"allowedRegions": ["us-east-1"]}, provider)) == []
    bucket = provider_for("aws:s3/bucket:Bucket", {"aws": aws_provider("eu-west-1")})
    assert run(policy(NAME), resource_args("aws:s3/bucket:Bucket", {}, {}, bucket)) == []


def test_kubernetes_objects_have_no_region() -> None:
    ns = Res("kubernetes:core/v1:Namespace", {"metadata": {"name": "x"}})
    assert run(policy(NAME), resource_args(ns.type, ns.props, {"allowedRegions": ["us-east-1"]})) == []
