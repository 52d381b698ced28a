"""Specs for policies/rules/gpu.py: instance-type allowlist, GPU ceiling, cost tags."""

from __future__ import annotations

from copy import deepcopy

import boto3
import pytest
from fixtures import GOOD, aws_provider, evaluate, policy, provider_for, resource_args, run, violated
from moto import mock_aws

from policies.rules._aws import GPUS_PER_INSTANCE, is_gpu_instance_type

NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"


class TestGpuInstanceTypeAllowed:
    name = "gpu-instance-type-allowed"

    def test_p4de_refused_in_dev(self) -> None:
        s = deepcopy(GOOD["dev"])
        s["gpu-chat"].props["instanceTypes"] = ["p4de.24xlarge"]  # 8 GPUs x 1 node: within dev's ceiling of 8
        [v] = evaluate(s, "dev")
        assert (v.policy, v.resource) == (self.name, "gpu-chat") and "p4de.24xlarge" in v.message

    def test_globs(self) -> None:
        s = deepcopy(GOOD["regulated"])
        s["gpu-notes"].props["instanceTypes"] = ["g6e.12xlarge"]
        assert violated(s, "regulated") == set()  # g6e.* is allowed
        s["gpu-notes"].props["instanceTypes"] = ["g5.12xlarge"]
        assert violated(s, "regulated") == {self.name}

    def test_gpu_group_must_name_its_instance_types(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["gpu-extract"].props["instanceTypes"]
        assert self.name in violated(s, "prod")

    def test_system_nodes_are_not_gpu_nodes(self) -> None:
        assert GOOD["prod"]["system-nodes"].props["instanceTypes"] == ["m7i.large"]
        assert run(policy(self.name), resource_args(NODE_GROUP, GOOD["prod"]["system-nodes"].props,
                                                    {"allowedInstanceTypes": []})) == []

    def test_launch_template_instance_type(self) -> None:
        lt = "aws:ec2/launchTemplate:LaunchTemplate"
        config = {"allowedInstanceTypes": ["g6.*"]}
        assert len(run(policy(self.name), resource_args(lt, {"instanceType": "p5.48xlarge"}, config))) == 1
        assert run(policy(self.name), resource_args(lt, {"instanceType": "m7i.large"}, config)) == []


class TestGpuCountCeiling:
    name = "gpu-count-ceiling"

    def test_scaling_past_the_ceiling(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-contracts"].props["scalingConfig"]["maxSize"] = 5.0  # 5 x 8 = 40 > 32
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "gpu-contracts") and "40 GPUs" in v.message

    def test_at_the_ceiling_passes(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-contracts"].props["scalingConfig"]["maxSize"] = 4.0  # 4 x 8 = 32
        assert violated(s, "prod") == set()

    def test_unknown_gpu_instance_type(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-extract"].props["instanceTypes"] = ["p6-b300.48xlarge"]
        assert violated(s, "prod") == {self.name, "gpu-instance-type-allowed"}

    def test_missing_max_size(self) -> None:
        props = deepcopy(GOOD["prod"]["gpu-extract"].props)
        del props["scalingConfig"]
        assert len(run(policy(self.name), resource_args(NODE_GROUP, props))) == 1

    def test_gpu_table_matches_ec2(self) -> None:
        # Independent source: the EC2 DescribeInstanceTypes data moto ships (GpuInfo.Gpus[].Count).
        with mock_aws():
            ec2 = boto3.client("ec2", region_name="us-east-1")
            answer = ec2.describe_instance_types(InstanceTypes=sorted(GPUS_PER_INSTANCE))["InstanceTypes"]
        ec2_counts = {it["InstanceType"]: sum(g["Count"] for g in it["GpuInfo"]["Gpus"]) for it in answer}
        assert ec2_counts == GPUS_PER_INSTANCE

    @pytest.mark.parametrize(("instance", "gpu"), [
        ("g6e.xlarge", True), ("p3dn.24xlarge", True), ("gr6.4xlarge", True),
        ("m7i.large", False), ("c7i.48xlarge", False), ("inf2.xlarge", False),
    ])
    def test_gpu_families(self, instance: str, gpu: bool) -> None:
        assert is_gpu_instance_type(instance) is gpu


class TestGpuNodegroupCostTags:
    name = "gpu-nodegroup-cost-tags"

    @pytest.mark.parametrize("tag", ["servekit:gpu", "servekit:purchase"])
    def test_missing_tag(self, tag: str) -> None:
        s = deepcopy(GOOD["prod"])
        del s["gpu-contracts"].props["tags"][tag]
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and tag in v.message

    def test_cost_that_is_not_a_number(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-contracts"].props["tags"]["servekit:monthly-cost-usd"] = "lots"
        assert violated(s, "prod") == {self.name, "monthly-budget"}

    def test_purchase_must_match_capacity_type(self) -> None:
        s = deepcopy(GOOD["dev"])
        s["gpu-chat"].props["tags"]["servekit:purchase"] = "spot"  # allowed in dev, but capacityType is ON_DEMAND
        [v] = evaluate(s, "dev")
        assert v.policy == self.name and "SPOT" in v.message
        s["gpu-chat"].props["capacityType"] = "SPOT"
        assert violated(s, "dev") == set()

    def test_spot_not_allowed_in_prod(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["gpu-extract"].props["tags"]["servekit:purchase"] = "spot"
        s["gpu-extract"].props["capacityType"] = "SPOT"
        assert violated(s, "prod") == {self.name}

    def test_tags_from_provider_default_tags_count(self) -> None:
        props = deepcopy(GOOD["prod"]["gpu-extract"].props)
        tags = props.pop("tags")
        provider = provider_for(NODE_GROUP, {"aws": aws_provider(tags=tags)})
        assert run(policy(self.name), resource_args(NODE_GROUP, props, provider=provider)) == []
        assert len(run(policy(self.name), resource_args(NODE_GROUP, props))) == 3
