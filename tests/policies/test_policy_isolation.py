"""Specs for policies/rules/isolation.py: each case mutates one known-good fixture and names the policy that objects."""

from __future__ import annotations

from copy import deepcopy

import pytest
from fixtures import GOOD, Res, args_of, evaluate, policy, resource_args, run, stack_args, violated
from pulumi_policy import EnforcementLevel
from pulumi_policy.proxy import UNKNOWN_ARRAY_VALUE, UNKNOWN_BOOLEAN_VALUE, UnknownValueError


@pytest.mark.parametrize("kind", ["dev", "prod", "regulated"])
def test_known_good_stacks_pass_every_policy(kind: str) -> None:
    # The whole pack, with the stack's real policies/config/<kind>.json, finds nothing in the good fixture.
    assert evaluate(GOOD[kind], kind) == []


class TestEksEndpointPrivate:
    name = "eks-endpoint-private"

    def test_public_endpoint_refused_where_private_is_required(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["cluster"].props["vpcConfig"]["endpointPublicAccess"] = True
        assert violated(s, "prod") == {self.name}

    def test_unset_public_access_counts_as_public(self) -> None:
        # AWS turns the public endpoint on when endpointPublicAccess is omitted.
        s = deepcopy(GOOD["prod"])
        del s["cluster"].props["vpcConfig"]["endpointPublicAccess"]
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "cluster")
        assert "unset" in v.message

    def test_cidr_limited_public_endpoint_passes_in_dev(self) -> None:
        assert run(policy(self.name), args_of("dev", "cluster", config={"requirePrivateEndpoint": False})) == []

    def test_public_endpoint_without_cidrs_is_open_to_the_world(self) -> None:
        s = deepcopy(GOOD["dev"])
        del s["cluster"].props["vpcConfig"]["publicAccessCidrs"]
        assert violated(s, "dev") == {self.name}

    @pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "10.0.0.0/8", "not-a-cidr"])
    def test_broad_or_invalid_cidrs(self, cidr: str) -> None:
        s = deepcopy(GOOD["dev"])  # dev allows nothing broader than /16
        s["cluster"].props["vpcConfig"]["publicAccessCidrs"] = ["203.0.113.0/24", cidr]
        [v] = evaluate(s, "dev")
        assert v.policy == self.name and cidr in v.message

    @pytest.mark.parametrize("kind", ["dev", "prod"])
    def test_private_access_must_be_on(self, kind: str) -> None:
        s = deepcopy(GOOD[kind])  # also with a CIDR-limited public endpoint (dev)
        s["cluster"].props["vpcConfig"]["endpointPrivateAccess"] = False
        assert violated(s, kind) == {self.name}

    def test_unknown_at_preview_defers_instead_of_guessing(self) -> None:
        props = deepcopy(GOOD["prod"]["cluster"].props)
        props["vpcConfig"]["endpointPublicAccess"] = UNKNOWN_BOOLEAN_VALUE
        args = resource_args("aws:eks/cluster:Cluster", props, {"requirePrivateEndpoint": True})
        with pytest.raises(UnknownValueError) as e:
            run(policy(self.name), args)
        assert e.value.props == ["vpcConfig", "endpointPublicAccess"]

    def test_missing_vpc_config_is_public(self) -> None:
        args = resource_args("aws:eks/cluster:Cluster", {}, {"requirePrivateEndpoint": True})
        assert len(run(policy(self.name), args)) == 2  # public on, private off


class TestEksNodesPrivateSubnets:
    name = "eks-nodes-private-subnets"

    def test_node_group_in_public_subnet(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-contracts"].deps["subnetIds"] = ["private-0", "public-0"]
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "gpu-contracts")
        assert "public-0" in v.message

    def test_elb_tag_marks_a_subnet_public(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["private-1"].props["tags"] = {"kubernetes.io/role/elb": "1"}
        assert violated(s, "prod") == {self.name}

    def test_subnets_matched_by_id_when_there_are_no_dependencies(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["public-0"].props["id"] = "subnet-0pub"
        s["gpu-extract"].deps.pop("subnetIds")
        s["gpu-extract"].props["subnetIds"] = ["subnet-0pub"]
        assert violated(s, "prod") == {self.name}
        s["gpu-extract"].props["subnetIds"] = ["subnet-elsewhere"]  # not in the stack: nothing to judge
        assert violated(s, "prod") == set()

    def test_unknown_subnet_ids_without_dependencies_defer(self) -> None:
        s = {"ng": Res("aws:eks/nodeGroup:NodeGroup", {"subnetIds": UNKNOWN_ARRAY_VALUE})}
        with pytest.raises(UnknownValueError):
            run(policy(self.name), stack_args(s))


class TestNoPublicIpOnNodes:
    name = "no-public-ip-on-nodes"

    @pytest.mark.parametrize("value", ["true", True])
    def test_launch_template_public_ip(self, value: object) -> None:
        s = deepcopy(GOOD["prod"])
        s["node-template"].props["networkInterfaces"] = [{"associatePublicIpAddress": value}]
        assert violated(s, "prod") == {self.name}

    def test_explicit_false_passes(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["node-template"].props["networkInterfaces"] = [{"associatePublicIpAddress": "false"}]
        assert violated(s, "prod") == set()

    def test_instance_public_ip(self) -> None:
        args = resource_args("aws:ec2/instance:Instance", {"associatePublicIpAddress": True})
        assert len(run(policy(self.name), args)) == 1


class TestNoWorldOpenIngress:
    name = "no-world-open-ingress"

    @pytest.mark.parametrize(("key", "cidr"), [("cidrBlocks", "0.0.0.0/0"), ("ipv6CidrBlocks", "::/0")])
    def test_security_group_ingress_from_anywhere(self, key: str, cidr: str) -> None:
        s = deepcopy(GOOD["prod"])
        s["nodes-sg"].props["ingress"].append({"protocol": "tcp", "fromPort": 22.0, "toPort": 22.0, key: [cidr]})
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "nodes-sg")
        assert "port 22" in v.message

    def test_open_egress_is_not_ingress(self) -> None:
        # The good fixture's nodes-sg has egress to 0.0.0.0/0; only ingress is judged.
        assert run(policy(self.name), args_of("prod", "nodes-sg")) == []

    def test_ingress_rule_resource(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["vllm-from-vpc"].props["cidrIpv4"] = "0.0.0.0/0"
        assert violated(s, "prod") == {self.name}

    def test_allowed_public_port(self) -> None:
        props = {"securityGroupId": "sg", "ipProtocol": "tcp", "fromPort": 443.0, "toPort": 443.0,
                 "cidrIpv4": "0.0.0.0/0"}
        rule = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
        assert run(policy(self.name), resource_args(rule, props, {"allowedPublicPorts": [443]})) == []
        assert len(run(policy(self.name), resource_args(rule, {**props, "toPort": 444.0},
                                                        {"allowedPublicPorts": [443]}))) == 1

    @pytest.mark.parametrize(("kind", "expected"), [("ingress", 1), ("egress", 0)])
    def test_legacy_security_group_rule(self, kind: str, expected: int) -> None:
        props = {"type": kind, "securityGroupId": "sg", "protocol": "-1", "fromPort": 0.0, "toPort": 0.0,
                 "cidrBlocks": ["0.0.0.0/0"]}
        token = "aws:ec2/securityGroupRule:SecurityGroupRule"
        assert len(run(policy(self.name), resource_args(token, props))) == expected

    def test_node_group_ssh_open_to_the_internet(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-contracts"].props["remoteAccess"] = {"ec2SshKey": "ops"}
        assert violated(s, "prod") == {self.name}
        s["gpu-contracts"].props["remoteAccess"]["sourceSecurityGroupIds"] = ["sg-bastion"]
        assert violated(s, "prod") == set()


class TestDefaultSecurityGroupClosed:
    name = "default-security-group-closed"

    def test_rules_on_the_default_group(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["default-sg"].props["egress"] = [
            {"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "cidrBlocks": ["0.0.0.0/0"]}]
        [v] = evaluate(s, "prod")
        assert v.policy == self.name
        assert v.enforcement == EnforcementLevel.MANDATORY  # prod.json: "all": "mandatory"

    def test_advisory_by_default(self) -> None:
        s = deepcopy(GOOD["dev"])
        s["default-sg"].props["ingress"] = [{"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "self": True}]
        [v] = evaluate(s, "dev")
        assert (v.policy, v.enforcement) == (self.name, EnforcementLevel.ADVISORY)


class TestNoEgressGateways:
    name = "no-egress-gateways"

    @pytest.mark.parametrize(("token", "props"), [
        ("aws:ec2/internetGateway:InternetGateway", {"vpcId": "vpc"}),
        ("aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway", {"vpcId": "vpc"}),
        ("aws:ec2/natGateway:NatGateway", {"subnetId": "subnet", "connectivityType": "public"}),
        ("aws:ec2/natGateway:NatGateway", {"subnetId": "subnet"}),  # public is the default
    ])
    def test_gateways_refused_without_egress(self, token: str, props: dict[str, object]) -> None:
        s = deepcopy(GOOD["regulated"])
        s["gw"] = Res(token, props)
        [v] = evaluate(s, "regulated")
        assert (v.policy, v.resource) == (self.name, "gw")

    def test_private_nat_gateway_is_fine(self) -> None:
        s = deepcopy(GOOD["regulated"])
        s["gw"] = Res("aws:ec2/natGateway:NatGateway", {"subnetId": "subnet", "connectivityType": "private"})
        assert violated(s, "regulated") == set()

    def test_gateways_allowed_where_egress_is_on(self) -> None:
        assert "igw" in GOOD["prod"] and "nat" in GOOD["prod"]
        assert violated(GOOD["prod"], "prod") == set()


class TestVpcEndpointsForPrivateEgress:
    name = "vpc-endpoints-for-private-egress"

    def test_missing_endpoint(self) -> None:
        s = deepcopy(GOOD["regulated"])
        del s["vpce-sts"]
        [v] = evaluate(s, "regulated")
        assert v.policy == self.name and "sts" in v.message and "ecr" not in v.message

    def test_not_required_with_egress(self) -> None:
        assert not any(r.type == "aws:ec2/vpcEndpoint:VpcEndpoint" for r in GOOD["prod"].values())
        assert run(policy(self.name), stack_args(GOOD["prod"], config={"noEgress": False})) == []
