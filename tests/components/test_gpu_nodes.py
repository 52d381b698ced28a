"""components.gpu_nodes: launch templates, purchase choices, sizing from placements, device plugin."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_stacks import (
    CB_RESERVATION,
    CB_ZONE,
    ODCR_GROUP,
    ODCR_ZONE,
    all_plans,
    config,
    gpu_node_groups,
    launch_template_of,
    model,
    plan,
    resources,
    subnet_zones,
    write_stack,
)

from components.gpu_nodes import DEVICE_PLUGIN_VERSION
from servekit.catalog import default_catalog
from servekit.cost import node_group_monthly_usd
from servekit.errors import UserError
from servekit.offline import plan_stack
from servekit.stackfile import resolve_stack

LT = "aws:ec2/launchTemplate:LaunchTemplate"


def test_no_launch_template_allows_imdsv1_and_every_volume_is_encrypted() -> None:
    count = 0
    for p in all_plans():
        for lt in resources(p, LT):
            count += 1
            md = lt.inputs["metadataOptions"]
            assert md["httpTokens"] == "required", (p.stack, lt.name)
            assert md["httpPutResponseHopLimit"] == 1 and md["httpEndpoint"] == "enabled"
            devices = lt.inputs["blockDeviceMappings"]
            assert devices and all(d["ebs"]["encrypted"] == "true" and d["ebs"]["volumeType"] == "gp3" for d in devices)
            assert "networkInterfaces" not in lt.inputs and "imageId" not in lt.inputs
    assert count >= 2 * len(all_plans())  # the system group's and at least one GPU group's in every stack


def test_capacity_block_node_group() -> None:
    p = plan("capacity-block")
    (ng,) = gpu_node_groups(p)
    lt = launch_template_of(p, ng)
    assert ng.inputs["capacityType"] == "CAPACITY_BLOCK"
    assert "instanceTypes" not in ng.inputs and lt.inputs["instanceType"] == "p5.4xlarge"
    assert lt.inputs["instanceMarketOptions"] == {"marketType": "capacity-block"}
    target = lt.inputs["capacityReservationSpecification"]["capacityReservationTarget"]
    assert target == {"capacityReservationId": CB_RESERVATION}
    zones = subnet_zones(p)
    assert len(set(zones.values())) == 3  # the VPC spans three zones ...
    assert {zones[s] for s in ng.inputs["subnetIds"]} == {CB_ZONE}  # ... the group uses the block's only
    assert len(ng.inputs["subnetIds"]) == 1
    assert ng.inputs["scalingConfig"] == {"minSize": 0, "desiredSize": 2, "maxSize": 2}
    assert ng.inputs["tags"]["servekit:purchase"] == "capacity-block"


def test_odcr_node_group_targets_the_reservation_group_in_its_zone() -> None:
    p = plan("odcr")
    (ng,) = gpu_node_groups(p)
    lt = launch_template_of(p, ng)
    assert ng.inputs["capacityType"] == "ON_DEMAND" and ng.inputs["instanceTypes"] == ["g6.xlarge"]
    assert lt.inputs["capacityReservationSpecification"]["capacityReservationTarget"] == {
        "capacityReservationResourceGroupArn": ODCR_GROUP}
    assert "instanceMarketOptions" not in lt.inputs
    assert {subnet_zones(p)[s] for s in ng.inputs["subnetIds"]} == {ODCR_ZONE}


def test_spot_diversifies_over_same_gpu_types_and_keeps_the_floor_on_demand() -> None:
    p = plan("spot")
    groups = {g.inputs["capacityType"]: g for g in gpu_node_groups(p)}
    spot, floor = groups["SPOT"], groups["ON_DEMAND"]
    types = spot.inputs["instanceTypes"]
    assert len(types) > 1 and types[0] == "g6.xlarge"
    cat = default_catalog()
    placed = cat.instances["g6.xlarge"]
    for t in types:
        inst = cat.instances[t]
        assert (inst.gpu, inst.gpus) == (placed.gpu, placed.gpus)
        assert inst.vcpu >= placed.vcpu and inst.memory_gib >= placed.memory_gib
    # replicas 3 on 1-GPU nodes = 3 nodes; onDemandFloor 1 -> 1 on-demand node, 2 on spot
    assert floor.inputs["scalingConfig"]["desiredSize"] == 1 and floor.inputs["instanceTypes"] == ["g6.xlarge"]
    assert spot.inputs["scalingConfig"]["desiredSize"] == 2
    assert floor.inputs["labels"]["servekit.io/purchase"] == "on-demand"
    for g in (spot, floor):
        assert g.inputs["tags"]["servekit:model"] == "chat"


def test_every_spot_group_in_every_plan_has_several_types() -> None:
    for p in all_plans():
        for g in gpu_node_groups(p):
            if g.inputs["capacityType"] == "SPOT":
                assert len(g.inputs["instanceTypes"]) > 1


def test_spot_without_a_sibling_type_is_refused(tmp_path: Path) -> None:
    # p4de.24xlarge is the only 8 x A100 80GB type: nothing to diversify over
    write_stack(tmp_path, "lonely", config(models=[model(
        name="big", model="llama-3.1-70b-instruct", quantization="bf16", gpus=["a100-80gb"], replicas=1,
        sla={"p95E2eSeconds": 30, "concurrencyPerReplica": 4}, purchase={"option": "spot"})]))
    with pytest.raises(UserError, match="at least two instance types") as e:
        plan_stack("lonely", tmp_path)
    assert e.value.path == "config.servekit:models[0].purchase.option"


@pytest.mark.parametrize("stack", ["dev", "prod", "regulated"])
def test_node_groups_are_sized_and_tagged_from_the_placements(stack: str) -> None:
    p = plan(stack)
    resolved = resolve_stack(stack)  # the placements, computed independently of the program
    deps = {d.name: d for d in resolved.spec.models}
    by_model = {g.inputs["tags"]["servekit:model"]: g for g in gpu_node_groups(p)}
    assert set(by_model) == {pl.name for pl in resolved.placements}  # one model per pool in these stacks
    for pl in resolved.placements:
        g = by_model[pl.name]
        i = g.inputs
        assert i["instanceTypes"] == [pl.instance_type]
        assert i["scalingConfig"] == {"minSize": pl.nodes, "desiredSize": pl.nodes, "maxSize": pl.max_nodes + 1}
        assert i["labels"]["servekit.io/gpu"] == pl.gpu_type
        assert i["labels"]["servekit.io/pool"] == i["tags"]["servekit:pool"]
        assert i["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
        dep = deps[pl.name]
        assert i["tags"]["servekit:gpu"] == pl.gpu_type
        assert i["tags"]["servekit:purchase"] == dep.purchase.option.value
        assert i["tags"]["servekit:monthly-cost-usd"] == f"{node_group_monthly_usd(pl, dep, 'us-east-1'):.2f}"
        lt = launch_template_of(p, g)
        assert lt.inputs["tags"] == i["tags"]
        data = lt.inputs["blockDeviceMappings"][-1]["ebs"]
        # base 80 GiB + a 15%-padded copy of the weights per replica a node can host, rounded up to 10 GiB
        assert data["volumeSize"] == math.ceil((80 + pl.weights_gib * pl.replicas_per_node * 1.15) / 10) * 10
        assert data["throughput"] == 1000 and data["iops"] == 16000


def test_prod_70b_pool_by_hand() -> None:
    g = next(g for g in gpu_node_groups(plan("prod")) if g.inputs["tags"]["servekit:model"] == "contracts")
    # 2 replicas of TP 2 on 8-GPU p4de nodes, spread over two AZs: 2 nodes; 131.4 GiB x 4 replicas/node
    assert g.inputs["instanceTypes"] == ["p4de.24xlarge"] and g.inputs["scalingConfig"]["desiredSize"] == 2
    assert launch_template_of(plan("prod"), g).inputs["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 690
    # p4de is offered only in us-east-1b and 1c (moto's EC2 data): the group avoids 1a
    assert {subnet_zones(plan("prod"))[s] for s in g.inputs["subnetIds"]} == {"us-east-1b", "us-east-1c"}


def test_models_with_the_same_gpu_and_purchase_share_a_node_group() -> None:
    (g,) = gpu_node_groups(plan("shared-pool"))
    assert g.inputs["tags"]["servekit:model"] == "chat-a,chat-b"
    assert g.inputs["scalingConfig"]["desiredSize"] == 3  # 1 + 2 replicas on 1-GPU nodes


def test_device_plugin_where_the_ami_needs_it() -> None:
    for p in all_plans():
        releases = [r for r in resources(p, "kubernetes:helm.sh/v3:Release")
                    if r.inputs["chart"] == "nvidia-device-plugin"]  # (extensions install other charts)
        ami = {g.inputs["amiType"] for g in gpu_node_groups(p)}
        if ami == {"BOTTLEROCKET_x86_64_NVIDIA"}:
            assert releases == [], p.stack  # built into Bottlerocket's NVIDIA variant
            continue
        assert ami == {"AL2023_x86_64_NVIDIA"}
        (rel,) = releases
        v = rel.inputs
        assert v["chart"] == "nvidia-device-plugin" and v["version"] == DEVICE_PLUGIN_VERSION
        assert v["repositoryOpts"]["repo"] == "https://nvidia.github.io/k8s-device-plugin"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in v["values"]["tolerations"]
        terms = v["values"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["key"] == "servekit.io/gpu"
        assert rel.provider and rel.provider.startswith(one_provider_urn(p))


def one_provider_urn(p: object) -> str:
    from servekit.offline import Plan

    assert isinstance(p, Plan)
    (prov,) = p.of_type("pulumi:providers:kubernetes")
    return prov.urn


def test_bottlerocket_keeps_the_os_volume_separate() -> None:
    p = plan("regulated")
    (g,) = gpu_node_groups(p)
    devices = launch_template_of(p, g).inputs["blockDeviceMappings"]
    assert [d["deviceName"] for d in devices] == ["/dev/xvda", "/dev/xvdb"]
    assert devices[0]["ebs"]["volumeSize"] == 8 and devices[1]["ebs"]["volumeSize"] > 100
