"""Plans of the repository's stacks and of purpose-built test stacks, run once per test session.

Each plan comes from the real program (``__main__.py``) under the offline engine with ``preview=False``,
so the recorded inputs are the values ``pulumi up`` would send. The purpose-built stacks cover what the
repository's stacks do not: a capacity block, an ODCR, spot with an on-demand floor, two models sharing
a pool, egress none on AL2023, an admin role.
"""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from servekit.offline import Plan, PlanResource, plan_stack

REPO_STACKS = ("dev", "prod", "regulated")
CB_RESERVATION = "cr-0a1b2c3d4e5f60718"
CB_ZONE = "us-east-1b"
ODCR_GROUP = "arn:aws:resource-groups:us-east-1:123456789012:group/servekit-gpu-odcr"
ODCR_ZONE = "us-east-1c"
ADMIN_ROLE = "arn:aws:iam::123456789012:role/platform-admins"

_TMP = tempfile.TemporaryDirectory(prefix="servekit-test-stacks-")
TMP_STACKS = Path(_TMP.name)

BASE: dict[str, Any] = {
    "aws:region": "us-east-1",
    "servekit:environment": "dev",
    "servekit:tags": {"owner": "ml@example.com", "costCenter": "cc-42", "dataClassification": "internal"},
    "servekit:network": {"vpcCidr": "10.70.0.0/16", "azCount": 3, "egress": "nat"},
    "servekit:cluster": {"version": "1.34", "endpointPublic": False},
    "servekit:models": [{
        "name": "chat", "model": "qwen2.5-7b-instruct", "quantization": "awq", "gpus": ["l4"], "replicas": 1,
        "sla": {"p95E2eSeconds": 10, "concurrencyPerReplica": 8, "workload": "chat"},
    }],
}


def config(**changes: Any) -> dict[str, Any]:
    """BASE with top-level ``servekit:<key>`` values replaced (``aws_region`` for ``aws:region``)."""
    out = copy.deepcopy(BASE)
    for key, value in changes.items():
        out["aws:region" if key == "aws_region" else f"servekit:{key}"] = value
    return out


def model(**changes: Any) -> dict[str, Any]:
    out = copy.deepcopy(BASE["servekit:models"][0])
    out.update(changes)
    return out


def write_stack(directory: Path, name: str, cfg: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"Pulumi.{name}.yaml"
    path.write_text(yaml.safe_dump({"config": cfg}, sort_keys=False))
    return path


CUSTOM: dict[str, dict[str, Any]] = {
    "capacity-block": config(models=[model(
        name="batch", model="llama-3.1-8b-instruct", quantization="bf16", gpus=None, instanceType="p5.4xlarge",
        replicas=2, spreadAcrossZones=False,
        purchase={"option": "capacity-block", "reservationId": CB_RESERVATION, "availabilityZone": CB_ZONE,
                  "endDate": "2027-06-30"})]),
    "odcr": config(models=[model(
        replicas=2, spreadAcrossZones=False,
        purchase={"option": "odcr", "reservationResourceGroupArn": ODCR_GROUP, "availabilityZone": ODCR_ZONE})]),
    "spot": config(models=[model(replicas=3, purchase={"option": "spot", "onDemandFloor": 1})]),
    "shared-pool": config(models=[model(name="chat-a"), model(name="chat-b", replicas=2)]),
    "none-al2023": config(network={"vpcCidr": "10.80.0.0/16", "azCount": 2, "egress": "none"},
                          models=[model(source="s3")]),
    "admin": config(environment="prod",
                    cluster={"version": "1.35", "endpointPublic": True, "publicAccessCidrs": ["198.51.100.0/24"],
                             "adminRoleArn": ADMIN_ROLE, "nodeOs": "bottlerocket"}),
}
for _name, _cfg in CUSTOM.items():
    for _m in _cfg["servekit:models"]:
        if _m.get("gpus") is None:
            _m.pop("gpus", None)
    write_stack(TMP_STACKS, _name, _cfg)


@cache
def plan(stack: str) -> Plan:
    """The plan of a repository stack or of one of CUSTOM (cached for the session)."""
    return plan_stack(stack, TMP_STACKS) if stack in CUSTOM else plan_stack(stack)


def all_plans() -> list[Plan]:
    return [plan(s) for s in (*REPO_STACKS, *CUSTOM)]


def resources(p: Plan, token: str) -> list[PlanResource]:
    return p.of_type(token)


def one(p: Plan, token: str) -> PlanResource:
    found = p.of_type(token)
    assert len(found) == 1, f"{p.stack}: expected one {token}, found {len(found)}"
    return found[0]


def subnet_zones(p: Plan) -> dict[str, str]:
    """Subnet id -> availability zone (ids are the mock's physical ids)."""
    return {r.id: r.inputs["availabilityZone"] for r in p.of_type("aws:ec2/subnet:Subnet") if r.id}


def launch_template_of(p: Plan, node_group: PlanResource) -> PlanResource:
    lt_id = node_group.inputs["launchTemplate"]["id"]
    return next(r for r in p.of_type("aws:ec2/launchTemplate:LaunchTemplate") if r.id == lt_id)


def gpu_node_groups(p: Plan) -> list[PlanResource]:
    return [r for r in p.of_type("aws:eks/nodeGroup:NodeGroup") if r.inputs.get("labels", {}).get("servekit.io/gpu")]


def walk(value: Any) -> Iterator[Any]:
    """Every nested value (for 'appears nowhere' checks)."""
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)
