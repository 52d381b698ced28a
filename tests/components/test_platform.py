"""components.platform: tags on every taggable AWS resource, the extension point, secrets, outputs."""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import textwrap
from functools import cache
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_stacks import all_plans, config, gpu_node_groups, launch_template_of, model, plan, write_stack

import components.platform as platform_mod
from servekit.offline import PLACEHOLDER_HF_TOKEN, REDACTED, plan_stack
from servekit.spec import DeploymentSpec

BASE_TAGS = ("owner", "cost-center", "data-classification", "servekit:stack")
POOL_TAGS = ("servekit:gpu", "servekit:purchase", "servekit:model", "servekit:monthly-cost-usd")


@cache
def taggable(token: str) -> bool:
    """Whether the pulumi_aws resource class for ``token`` accepts ``tags`` (read from the SDK itself)."""
    _, mod_path, cls = token.split(":")
    module = importlib.import_module(f"pulumi_aws.{mod_path.split('/')[0]}")
    return "tags" in inspect.signature(getattr(module, cls)._internal_init).parameters


def test_every_taggable_aws_resource_carries_the_stack_tags() -> None:
    checked = 0
    for p in all_plans():
        spec_tags = {"dev": ("platform-team@example.com", "cc-1234", "internal"),
                     "prod": ("platform-team@example.com", "cc-1234", "confidential"),
                     "regulated": ("clinical-ml@example.com", "cc-7001", "restricted")}.get(
            p.stack, ("ml@example.com", "cc-42", "internal"))
        for r in p.resources:
            if not r.custom or not r.type.startswith("aws:") or not taggable(r.type):
                continue
            checked += 1
            tags = r.inputs.get("tags") or {}
            assert tuple(tags.get(k) for k in BASE_TAGS) == (*spec_tags, p.stack), (p.stack, r.type, r.name)
            if r.type in ("aws:eks/nodeGroup:NodeGroup", "aws:ec2/launchTemplate:LaunchTemplate") and \
                    tags.get("servekit:pool") != "system":
                assert all(tags.get(k) for k in POOL_TAGS), (p.stack, r.name)
                assert float(tags["servekit:monthly-cost-usd"]) > 0
    assert checked > 200


def test_tag_specifications_put_the_pool_tags_on_instances_and_volumes() -> None:
    p = plan("prod")
    for g in gpu_node_groups(p):
        lt = launch_template_of(p, g)
        kinds = {s["resourceType"]: s["tags"] for s in lt.inputs["tagSpecifications"]}
        assert set(kinds) == {"instance", "volume", "network-interface"}
        assert all(t == g.inputs["tags"] for t in kinds.values())


def test_everything_hangs_under_the_platform_component() -> None:
    for p in all_plans():
        (root,) = p.of_type("pulumi:pulumi:Stack")
        (plat,) = p.children(root.urn)
        assert plat.type == "servekit:platform:Platform"
        kids = {c.type for c in p.children(plat.urn)}
        assert {"servekit:network:Network", "servekit:cluster:Cluster", "servekit:gpu_nodes:GpuNodes"} <= kids
        assert len(list(p.descendants(plat.urn))) == len(p.resources) - 2  # all but the stack and the Platform


EXTENSION = '''
import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

ORDER = []


def attach(ctx):
    ORDER.append("first")
    k8s.core.v1.Secret("hf-token", metadata={"namespace": "default", "name": "hf-token"},
                       string_data={"token": ctx.hf_token}, opts=ctx.k8s_opts())
    aws.s3.Bucket("model-store", tags=ctx.tags, opts=ctx.opts())
    return {"models": {"chat": {"endpoint": "http://from-extension"}}, "storeTags": dict(ctx.tags)}


def attach_second(ctx):
    ORDER.append("second")
    assert "storeTags" in ctx.outputs  # later extensions see earlier ones' outputs
    return {"pools": [p.name for p in ctx.plan.pools]}
'''


@pytest.fixture()
def extension(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> object:
    (tmp_path / "fake_servekit_ext.py").write_text(textwrap.dedent(EXTENSION))
    (tmp_path / "fake_servekit_ext2.py").write_text("from fake_servekit_ext import attach_second as attach\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(platform_mod, "EXTENSION_MODULES", ("fake_servekit_ext", "fake_servekit_ext2"))
    yield importlib.import_module("fake_servekit_ext")
    for name in ("fake_servekit_ext", "fake_servekit_ext2"):
        sys.modules.pop(name, None)


def test_an_extension_plugs_in_and_the_hf_token_stays_secret(extension: object, tmp_path: Path) -> None:
    known = "hf_ThisIsAKnownTestTokenValue0123456789"
    cfg = config(models=[model()])
    cfg["servekit:hfToken"] = known  # plain text on purpose: the plan must still never show it
    write_stack(tmp_path / "stacks", "ext", cfg)
    p = plan_stack("ext", tmp_path / "stacks")
    assert extension.ORDER == ["first", "second"]  # type: ignore[attr-defined]
    (plat,) = p.of_type("servekit:platform:Platform")
    (secret,) = p.of_type("kubernetes:core/v1:Secret")
    (bucket,) = p.of_type("aws:s3/bucket:Bucket")
    assert secret.parent == plat.urn and bucket.parent == plat.urn
    (provider,) = p.of_type("pulumi:providers:kubernetes")
    assert secret.provider and secret.provider.startswith(provider.urn)
    string_data = secret.inputs["stringData"]
    assert REDACTED in (string_data, string_data.get("token") if isinstance(string_data, dict) else None)
    assert bucket.inputs["tags"]["servekit:stack"] == "ext"
    assert p.outputs["models"] == {"chat": {"endpoint": "http://from-extension"}}  # replaces the placeholder
    assert p.outputs["pools"] == ["l4-on-demand"]
    text = json.dumps(p.to_json())
    assert known not in text and PLACEHOLDER_HF_TOKEN not in text
    assert any("plain text" in w for w in p.warnings)


def test_an_extension_module_without_attach_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_mod, "EXTENSION_MODULES", ("json",))
    with pytest.raises(TypeError, match="json is listed in EXTENSION_MODULES but defines no attach"):
        plan_stack("dev")


def test_stack_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(platform_mod, "EXTENSION_MODULES", ())  # the AWS side alone: placeholder endpoints
    p = plan_stack("prod")
    o = p.outputs
    assert o["clusterName"] == "servekit-prod" and o["region"] == "us-east-1"
    assert o["vpcId"].startswith("vpc-") and o["clusterEndpoint"].startswith("https://")
    assert set(o["nodeGroups"]) == {n["name"] for n in p.node_pools}
    assert o["models"]["contracts"]["endpoint"] == "http://contracts.contracts.svc.cluster.local:8000/v1"
    assert o["models"]["contracts"]["slaP95Seconds"] == 15
    assert o["models"]["contracts"]["nodePools"] == ["a100-80gb-reserved-1y"]
    assert [x["instanceType"] for x in o["placements"]] == [pl.instance_type for pl in p.placements]
    assert p.of_type("servekit:vllm_service:VllmService") == []


def test_pulumi_yaml_defaults_match_the_spec() -> None:
    import yaml

    project = yaml.safe_load((Path(platform_mod.__file__).resolve().parents[1] / "Pulumi.yaml").read_text())
    assert project["runtime"] == {"name": "python", "options": {"toolchain": "pip", "virtualenv": ".venv"}}
    assert project["main"] == "__main__.py" and project["stackConfigDir"] == "stacks"
    fields = DeploymentSpec.model_fields
    for key, decl in project["config"].items():
        if key == "aws:region":
            assert decl == fields["region"].default
            continue
        assert decl["type"] in ("string", "integer", "boolean", "array")
        name = next(n for n, f in fields.items() if (f.alias or n) == key)
        assert decl["default"] == fields[name].default, key
