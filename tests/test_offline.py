"""servekit.offline: the Pulumi internals it relies on, re-runs, determinism, errors, secrets, invokes."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from servekit.errors import UserError
from servekit.offline import (
    FAKE_ACCOUNT_ID,
    REDACTED,
    RecordingMocks,
    plan_stack,
    policy_document,
    project_defaults,
    redact,
    run_program,
    stack_config,
)
from servekit.stackfile import read_stack_config


def test_the_pulumi_internals_the_engine_uses_are_still_there() -> None:
    """Fails when a pulumi upgrade moves what servekit.offline imports or reads (pulumi is pinned for this)."""
    import importlib.metadata
    import inspect

    import pulumi
    from pulumi.runtime import rpc, settings
    from pulumi.runtime.mocks import MockMonitor
    from pulumi.runtime.stack import run_pulumi_func
    from pulumi.runtime.sync_await import _sync_await

    assert importlib.metadata.version("pulumi") == "3.272.0"
    assert inspect.iscoroutinefunction(run_pulumi_func) and callable(_sync_await)
    assert rpc._special_sig_key == "4dabf18193072939515e22adb298388d"
    assert rpc._special_secret_sig == "1b47061264138c4ac30d75fd1eb44270"
    assert hasattr(settings, "ROOT") and callable(settings.get_root_resource)
    assert "monitor" in inspect.signature(pulumi.runtime.set_mocks).parameters
    assert "logger" in inspect.signature(pulumi.runtime.set_mocks).parameters
    assert callable(MockMonitor.RegisterResource) and callable(pulumi.runtime.get_config_env)
    assert isinstance(pulumi.runtime.config.CONFIG.get(), dict)


def test_a_tiny_program_runs_twice_in_one_process(tmp_path: Path) -> None:
    program = tmp_path / "prog.py"
    program.write_text(
        "import pulumi, pulumi_aws as aws\n"
        "cfg = pulumi.Config('servekit')\n"
        "v = aws.ec2.Vpc('v', cidr_block=cfg.require('cidr'), tags={'t': cfg.require_secret('tok')})\n"
        "pulumi.export('acct', aws.get_caller_identity_output().account_id)\n"
        "pulumi.export('vpc', v.id)\n")
    for cidr in ("10.1.0.0/16", "10.2.0.0/16"):
        p = run_program({"servekit:cidr": cidr, "servekit:tok": "s3cret"}, "t", secret_keys=("servekit:tok",),
                        program=program)
        (vpc,) = p.of_type("aws:ec2/vpc:Vpc")
        assert vpc.inputs["cidrBlock"] == cidr  # this run's value, not the previous run's
        tags = vpc.inputs["tags"]  # a secret inside a map makes the engine treat the whole map as secret
        assert REDACTED in (tags, tags.get("t") if isinstance(tags, dict) else None)
        assert p.outputs["acct"] == FAKE_ACCOUNT_ID and p.outputs["vpc"] == vpc.id
        assert "s3cret" not in json.dumps(p.to_json())


def test_plans_are_deterministic() -> None:
    a, b = plan_stack("prod").to_json(), plan_stack("prod").to_json()
    assert json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)
    urns = [r["urn"] for r in a["resources"]]
    assert len(urns) == len(set(urns))
    by_urn = {r["urn"]: r for r in a["resources"]}
    for r in a["resources"]:  # parents come first, and every dependency is a planned resource
        assert r["parent"] is None or urns.index(r["parent"]) < urns.index(r["urn"])
        assert all(d in by_urn for d in r["dependencies"])


def test_a_stack_file_error_stops_before_any_resource(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.bad.yaml").write_text(read_stack_config("dev")[0].read_text().replace(
        "qwen2.5-7b-instruct", "no-such-model"))
    path, config, _ = stack_config("bad", tmp_path)
    records: list[dict[str, Any]] = []
    with pytest.raises(UserError, match="unknown model") as e:
        run_program(config, "bad", display_file=str(path), records=records)
    assert e.value.file == str(path) and e.value.path == "config.servekit:models[0].model"
    assert [r["type"] for r in records] == ["pulumi:pulumi:Stack"]  # only the implicit stack, nothing created


def test_project_defaults_reach_the_program_like_the_cli_applies_them(tmp_path: Path) -> None:
    assert project_defaults() == {"aws:region": "us-east-1", "servekit:environment": "dev", "servekit:slaGate": True}
    text = read_stack_config("dev")[0].read_text()
    text = text.replace("  aws:region: us-east-1\n", "").replace("  servekit:environment: dev\n", "")
    (tmp_path / "Pulumi.bare.yaml").write_text(text)
    p = plan_stack("bare", tmp_path)
    assert p.region == "us-east-1" and p.outputs["region"] == "us-east-1"


def test_redaction() -> None:
    wrapped = {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": "hf_x"}
    assert redact({"a": [1, wrapped, {"b": wrapped}], "c": None}) == {"a": [1, REDACTED, {"b": REDACTED}], "c": None}
    other = {"4dabf18193072939515e22adb298388d": "5cf8f73096256a8f31e491e813e4eb8e", "value": "x"}  # an asset
    assert redact(other) == other


def _call(token: str, **args: Any) -> dict[str, Any]:
    return RecordingMocks("eu-west-1").call(SimpleNamespace(token=token, args=args, provider=""))


def test_invokes_are_answered_for_the_region() -> None:
    zones = _call("aws:index/getAvailabilityZones:getAvailabilityZones")
    assert zones["names"] == ["eu-west-1a", "eu-west-1b", "eu-west-1c"]
    assert zones["zoneIds"] == ["euw1-az1", "euw1-az2", "euw1-az3"]
    assert _call("aws:index/getRegion:getRegion")["name"] == "eu-west-1"
    assert _call("aws:index/getCallerIdentity:getCallerIdentity")["accountId"] == FAKE_ACCOUNT_ID
    ami = _call("aws:ssm/getParameter:getParameter",
                name="/aws/service/eks/optimized-ami/1.34/amazon-linux-2023/x86_64/nvidia/recommended/image_id")
    assert ami["value"].startswith("ami-") and ami["type"] == "String"
    with pytest.raises(NotImplementedError, match="aws:ec2/getAmi:getAmi"):
        _call("aws:ec2/getAmi:getAmi")


def test_policy_documents_are_real_json() -> None:
    doc = json.loads(policy_document({"statements": [
        {"effect": "Allow", "actions": ["s3:GetObject"], "resources": ["arn:aws:s3:::b/*"],
         "principals": [{"type": "Service", "identifiers": ["pods.eks.amazonaws.com"]}],
         "conditions": [{"test": "StringEquals", "variable": "aws:SourceAccount", "values": ["123456789012"]}]},
        {"sid": "Two", "effect": "Deny", "actions": ["s3:*", "kms:*"], "resources": ["*"]},
    ]}))
    assert doc == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"}, "Action": "s3:GetObject",
         "Resource": "arn:aws:s3:::b/*", "Condition": {"StringEquals": {"aws:SourceAccount": "123456789012"}}},
        {"Sid": "Two", "Effect": "Deny", "Action": ["s3:*", "kms:*"], "Resource": "*"},
    ]}
