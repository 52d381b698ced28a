"""The plans against the real AWS contracts: botocore's service models and moto's EC2 data.

Every enum-valued input of every planned stack (the repository's and the purpose-built ones in
tests/aws_stacks.py) must be a value the EKS / EC2 APIs accept, per the enum in botocore's service
model; every instance type must exist in moto's EC2 instance-type data and be offered where the node
group puts it. The offerings snapshot the kit ships must equal what the generator makes from moto.
"""

from __future__ import annotations

import gzip
import json
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import botocore.session
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from aws_stacks import CUSTOM, REPO_STACKS, gpu_node_groups, launch_template_of, plan, subnet_zones

from servekit.offerings import DATA_FILE

# resource type -> [(dotted path with [] for lists, service, botocore shape)]
ENUMS: dict[str, list[tuple[str, str, str]]] = {
    "aws:eks/nodeGroup:NodeGroup": [
        ("amiType", "eks", "AMITypes"), ("capacityType", "eks", "CapacityTypes"),
        ("taints[].effect", "eks", "TaintEffect"),
    ],
    "aws:eks/cluster:Cluster": [
        ("enabledClusterLogTypes[]", "eks", "LogType"),
        ("accessConfig.authenticationMode", "eks", "AuthenticationMode"),
        ("upgradePolicy.supportType", "eks", "SupportType"),
        ("kubernetesNetworkConfig.ipFamily", "eks", "IpFamily"),
    ],
    "aws:eks/addon:Addon": [
        ("resolveConflictsOnCreate", "eks", "ResolveConflicts"),
        ("resolveConflictsOnUpdate", "eks", "ResolveConflicts"),
    ],
    "aws:eks/accessPolicyAssociation:AccessPolicyAssociation": [("accessScope.type", "eks", "AccessScopeType")],
    "aws:ec2/launchTemplate:LaunchTemplate": [
        ("blockDeviceMappings[].ebs.volumeType", "ec2", "VolumeType"),
        ("instanceMarketOptions.marketType", "ec2", "MarketType"),
        ("metadataOptions.httpTokens", "ec2", "LaunchTemplateHttpTokensState"),
        ("metadataOptions.httpEndpoint", "ec2", "LaunchTemplateInstanceMetadataEndpointState"),
        ("metadataOptions.instanceMetadataTags", "ec2", "LaunchTemplateInstanceMetadataTagsState"),
        ("tagSpecifications[].resourceType", "ec2", "ResourceType"),
    ],
    "aws:ec2/flowLog:FlowLog": [("trafficType", "ec2", "TrafficType"),
                                ("logDestinationType", "ec2", "LogDestinationType")],
    "aws:ec2/vpcEndpoint:VpcEndpoint": [("vpcEndpointType", "ec2", "VpcEndpointType")],
    "aws:ec2/eip:Eip": [("domain", "ec2", "DomainType")],
    "aws:ec2/natGateway:NatGateway": [("connectivityType", "ec2", "ConnectivityType")],
}
STACKS = (*REPO_STACKS, *CUSTOM)


@cache
def enum(service: str, shape: str) -> frozenset[str]:
    values = botocore.session.get_session().get_service_model(service).shape_for(shape).enum
    assert values, f"{service}.{shape} has no enum"
    return frozenset(values)


def values_at(obj: Any, path: str) -> Iterator[Any]:
    """Values at a dotted path; ``a[]`` descends into every element of list ``a``; missing keys yield nothing."""
    head, _, rest = path.partition(".")
    many = head.endswith("[]")
    key = head.removesuffix("[]")
    if not isinstance(obj, dict) or obj.get(key) is None:
        return
    items = obj[key] if many else [obj[key]]
    for item in items:
        if rest:
            yield from values_at(item, rest)
        else:
            yield item


@pytest.mark.parametrize("stack", STACKS)
def test_every_enum_input_is_valid_per_botocore(stack: str) -> None:
    p = plan(stack)
    checked = 0
    for r in p.resources:
        for path, service, shape in ENUMS.get(r.type, []):
            for value in values_at(r.inputs, path):
                checked += 1
                assert value in enum(service, shape), f"{stack}: {r.type} {r.name} {path}={value!r} not in {shape}"
    assert checked >= 40, checked  # node groups, the cluster, add-ons, launch templates, flow logs, endpoints


def test_values_at_is_not_vacuous() -> None:
    doc = {"a": [{"b": "x"}, {"b": "y"}, {}], "c": {"d": "z"}}
    assert list(values_at(doc, "a[].b")) == ["x", "y"] and list(values_at(doc, "c.d")) == ["z"]
    assert "NO_SCHEDULE" in enum("eks", "TaintEffect") and "NoSchedule" not in enum("eks", "TaintEffect")


def _moto_resources() -> Path:
    import moto

    return Path(moto.__file__).resolve().parent / "ec2" / "resources"


def _read_gz(path: Path) -> Any:
    with gzip.open(path) as f:
        return json.loads(f.read())


@cache
def moto_instance_types() -> frozenset[str]:
    return frozenset(_read_gz(_moto_resources() / "instance_types.json.gz"))


@cache
def moto_offerings(region: str) -> dict[str, set[str]]:
    rows = _read_gz(_moto_resources() / "instance_type_offerings" / "availability-zone" / f"{region}.json.gz")
    out: dict[str, set[str]] = {}
    for row in rows:
        out.setdefault(row["InstanceType"], set()).add(row["Location"])
    return out


@pytest.mark.parametrize("stack", STACKS)
def test_instance_types_exist_and_are_offered_where_the_node_groups_put_them(stack: str) -> None:
    p = plan(stack)
    zones_of = subnet_zones(p)
    offered = moto_offerings(p.region)
    groups = p.of_type("aws:eks/nodeGroup:NodeGroup")
    assert groups
    for g in groups:
        types = g.inputs.get("instanceTypes") or [launch_template_of(p, g).inputs["instanceType"]]
        zones = {zones_of[s] for s in g.inputs["subnetIds"]}
        lt = launch_template_of(p, g).inputs
        reserved = "capacityReservationSpecification" in lt
        for t in types:
            assert t in moto_instance_types(), f"{t} unknown to EC2"
            assert zones & offered.get(t, set()), f"{g.name}: {t} offered in none of {sorted(zones)}"
            if reserved:
                assert len(zones) == 1 and zones <= offered[t]
            else:
                assert len(offered[t]) >= 2, f"{t} offered in fewer than two AZs of {p.region}"
        if not reserved:  # the node group only uses zones where its placed type is offered
            assert zones <= offered[types[0]]
    assert gpu_node_groups(p)


def test_the_offerings_snapshot_equals_what_moto_gives() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import gen_ec2_offerings

    assert DATA_FILE.read_text() == gen_ec2_offerings.render(gen_ec2_offerings.build()), \
        "servekit/data/ec2-offerings.json is stale: run scripts/gen_ec2_offerings.py"
