"""components.network: subnet math (pure) and the VPC resources of every planned stack (preview=False)."""

from __future__ import annotations

import ipaddress
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_stacks import REPO_STACKS, all_plans, one, plan, resources

from components.network import INTERFACE_ENDPOINTS, SubnetPlan, plan_subnets
from servekit.errors import UserError
from servekit.spec import Egress, NetworkSpec

ZONES6 = ("z-a", "z-b", "z-c", "z-d", "z-e", "z-f")


def test_subnets_of_a_slash16_over_three_zones_by_hand() -> None:
    # /16 cut into 4 /18 blocks (ceil(log2(3+1)) = 2 bits): three node subnets, then /24s from block 4.
    p = plan_subnets(NetworkSpec(vpc_cidr="10.50.0.0/16", az_count=3, egress=Egress.NAT), ZONES6[:3])
    assert list(p.private.values()) == ["10.50.0.0/18", "10.50.64.0/18", "10.50.128.0/18"]
    assert list(p.public.values()) == ["10.50.192.0/24", "10.50.193.0/24", "10.50.194.0/24"]
    assert p.service_cidr == "172.20.0.0/16"
    assert p.usable_addresses("z-a") == 16384 - 5


@pytest.mark.parametrize("prefix", [16, 17, 18, 19, 20])
@pytest.mark.parametrize("zones", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("egress", [Egress.NAT, Egress.NONE])
def test_subnets_never_overlap_and_stay_inside_the_vpc(prefix: int, zones: int, egress: Egress) -> None:
    vpc = ipaddress.IPv4Network(f"10.0.0.0/{prefix}")
    p = plan_subnets(NetworkSpec(vpc_cidr=str(vpc), az_count=zones, egress=egress), ZONES6[:zones])
    nets = [ipaddress.IPv4Network(c) for c in (*p.private.values(), *p.public.values())]
    assert len(p.private) == zones and len(p.public) == (zones if egress is Egress.NAT else 0)
    assert all(n.subnet_of(vpc) for n in nets)
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1:])
    sizes = {ipaddress.IPv4Network(c).num_addresses for c in p.private.values()}
    assert len(sizes) == 1  # equal node subnets
    assert sizes.pop() * (zones + 1) <= vpc.num_addresses  # and at least one more such block is left free


def test_service_cidr_moves_off_a_vpc_that_overlaps_it() -> None:
    p = plan_subnets(NetworkSpec(vpc_cidr="172.20.0.0/16", az_count=2), ZONES6[:2])
    assert p.service_cidr == "10.100.0.0/16"


def test_pod_address_capacity_is_checked() -> None:
    p = plan_subnets(NetworkSpec(vpc_cidr="10.9.0.0/20", az_count=3), ZONES6[:3])
    have = p.usable_addresses("z-a")  # a /22: 1024 - 5
    assert have == 1019
    p.check_capacity({"z-a": have})
    with pytest.raises(UserError, match=r"z-a.*1019 usable addresses.*1020") as e:
        p.check_capacity({"z-a": have + 1}, file="stacks/Pulumi.x.yaml")
    assert e.value.path == "config.servekit:network.vpcCidr"


def test_a_big_gpu_pool_in_a_small_vpc_is_refused_before_any_resource(tmp_path: Path) -> None:
    from aws_stacks import config, model, write_stack

    from servekit.offline import plan_stack

    # 40 nodes of g6.xlarge (4 ENIs x 15 IPs each) cannot fit a /22 per zone.
    write_stack(tmp_path, "tiny", config(network={"vpcCidr": "10.9.0.0/20", "azCount": 3, "egress": "nat"},
                                         models=[model(replicas=40)]))
    with pytest.raises(UserError, match="usable addresses"):
        plan_stack("tiny", tmp_path)


@pytest.mark.parametrize("stack", ["regulated", "none-al2023"])
def test_no_egress_means_no_nat_no_igw_no_public_subnet_no_default_route(stack: str) -> None:
    p = plan(stack)
    assert resources(p, "aws:ec2/natGateway:NatGateway") == []
    assert resources(p, "aws:ec2/internetGateway:InternetGateway") == []
    assert resources(p, "aws:ec2/eip:Eip") == []
    subnets = resources(p, "aws:ec2/subnet:Subnet")
    assert subnets and all(s.inputs["tags"]["servekit:subnet"] == "nodes" for s in subnets)
    assert not any(s.inputs["tags"].get("kubernetes.io/role/elb") for s in subnets)
    assert all(r.inputs.get("destinationCidrBlock") != "0.0.0.0/0" for r in resources(p, "aws:ec2/route:Route"))


def test_regulated_reaches_aws_through_endpoints_only() -> None:
    p = plan("regulated")
    endpoints = [e for e in resources(p, "aws:ec2/vpcEndpoint:VpcEndpoint")
                 if e.name.startswith("servekit-network-")]  # the network's own (monitoring may add aps-workspaces)
    interface = {e.inputs["serviceName"]: e for e in endpoints if e.inputs["vpcEndpointType"] == "Interface"}
    assert set(interface) == {f"com.amazonaws.us-east-1.{s}" for s in INTERFACE_ENDPOINTS}
    for needed in ("ecr.api", "ecr.dkr", "sts", "ec2", "eks-auth", "logs", "ssm"):
        assert f"com.amazonaws.us-east-1.{needed}" in interface
    assert all(e.inputs["privateDnsEnabled"] is True for e in interface.values())
    node_subnets = {s.id for s in resources(p, "aws:ec2/subnet:Subnet")}
    assert all(set(e.inputs["subnetIds"]) == node_subnets for e in interface.values())
    gateway = [e for e in endpoints if e.inputs["vpcEndpointType"] == "Gateway"]
    assert [g.inputs["serviceName"] for g in gateway] == ["com.amazonaws.us-east-1.s3"]
    sg = next(s for s in resources(p, "aws:ec2/securityGroup:SecurityGroup") if s.name.endswith("-endpoints"))
    assert sg.inputs["ingress"][0]["cidrBlocks"] == ["10.60.0.0/16"] and sg.inputs["ingress"][0]["fromPort"] == 443


def test_nat_egress_per_zone_in_prod_single_in_dev() -> None:
    assert len(resources(plan("prod"), "aws:ec2/natGateway:NatGateway")) == 3
    assert len(resources(plan("dev"), "aws:ec2/natGateway:NatGateway")) == 1
    for stack in ("dev", "prod"):
        p = plan(stack)
        defaults = [r for r in resources(p, "aws:ec2/route:Route") if r.inputs["destinationCidrBlock"] == "0.0.0.0/0"]
        via_nat = [r for r in defaults if r.inputs.get("natGatewayId")]
        assert len(via_nat) == len(resources(p, "aws:ec2/routeTable:RouteTable")) - 1  # every node route table
        assert len(defaults) - len(via_nat) == 1  # the public route table, to the IGW


def test_no_subnet_maps_public_ips() -> None:
    for p in all_plans():
        subnets = resources(p, "aws:ec2/subnet:Subnet")
        assert subnets, p.stack
        assert all(s.inputs["mapPublicIpOnLaunch"] is False for s in subnets), p.stack


@pytest.mark.parametrize("stack", REPO_STACKS)
def test_subnet_cidrs_are_the_planned_ones(stack: str) -> None:
    p = plan(stack)
    spec_net = {"dev": ("10.40.0.0/16", 2), "prod": ("10.50.0.0/16", 3), "regulated": ("10.60.0.0/16", 3)}[stack]
    vpc = one(p, "aws:ec2/vpc:Vpc")
    assert vpc.inputs["cidrBlock"] == spec_net[0]
    assert vpc.inputs["enableDnsHostnames"] is True and vpc.inputs["enableDnsSupport"] is True
    nodes = sorted((s.inputs["availabilityZone"], s.inputs["cidrBlock"]) for s in resources(p, "aws:ec2/subnet:Subnet")
                   if s.inputs["tags"]["servekit:subnet"] == "nodes")
    expected: SubnetPlan = plan_subnets(NetworkSpec(vpc_cidr=spec_net[0], az_count=spec_net[1]),
                                        [z for z, _ in nodes])
    assert nodes == sorted(expected.private.items())


def test_flow_logs_go_to_an_encrypted_log_group_and_the_default_sg_is_empty() -> None:
    for p in all_plans():
        flow = one(p, "aws:ec2/flowLog:FlowLog")
        assert flow.inputs["trafficType"] == "ALL" and flow.inputs["logDestinationType"] == "cloud-watch-logs"
        group = next(g for g in resources(p, "aws:cloudwatch/logGroup:LogGroup") if "vpc-flow-logs" in g.inputs["name"])
        assert group.urn in flow.dependencies
        key = next(k for k in resources(p, "aws:kms/key:Key") if k.name.endswith("-flow-logs"))
        assert key.inputs["enableKeyRotation"] is True
        assert group.inputs["kmsKeyId"].startswith("arn:aws:kms:") and key.urn in group.dependencies
        policy = json.loads(key.inputs["policy"])
        logs = next(s for s in policy["Statement"] if s["Sid"] == "CloudWatchLogsUse")
        assert logs["Principal"]["Service"] == "logs.us-east-1.amazonaws.com"
        assert logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"].endswith(group.inputs["name"])
        default_sg = one(p, "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup")
        assert default_sg.inputs["ingress"] == [] and default_sg.inputs["egress"] == []
