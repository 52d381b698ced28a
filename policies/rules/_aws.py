"""AWS type tokens (pulumi-aws 7.x classic provider) and helpers shared by the AWS rules."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from pulumi_policy import PolicyProviderResource, PolicyResource

from ._props import Findings, Unknown, entries, get, items, iter_known, json_doc, text

CLUSTER = "aws:eks/cluster:Cluster"
NODE_GROUP = "aws:eks/nodeGroup:NodeGroup"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
INSTANCE = "aws:ec2/instance:Instance"
VPC = "aws:ec2/vpc:Vpc"
SUBNET = "aws:ec2/subnet:Subnet"
NAT_GATEWAY = "aws:ec2/natGateway:NatGateway"
INTERNET_GATEWAY = "aws:ec2/internetGateway:InternetGateway"
EGRESS_ONLY_IGW = "aws:ec2/egressOnlyInternetGateway:EgressOnlyInternetGateway"
SECURITY_GROUP = "aws:ec2/securityGroup:SecurityGroup"
SECURITY_GROUP_RULE = "aws:ec2/securityGroupRule:SecurityGroupRule"
SG_INGRESS_RULE = "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule"
DEFAULT_SECURITY_GROUP = "aws:ec2/defaultSecurityGroup:DefaultSecurityGroup"
VPC_ENDPOINT = "aws:ec2/vpcEndpoint:VpcEndpoint"
KMS_KEY = "aws:kms/key:Key"
LOG_GROUP = "aws:cloudwatch/logGroup:LogGroup"
SNS_TOPIC = "aws:sns/topic:Topic"
BUCKET = "aws:s3/bucket:Bucket"
BUCKET_SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
BUCKET_PAB = "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock"
BUCKET_POLICY = "aws:s3/bucketPolicy:BucketPolicy"
EBS_VOLUME = "aws:ebs/volume:Volume"

# GPUs per instance for the EC2 GPU types the kit can place on. Source: EC2 DescribeInstanceTypes
# (GpuInfo.Gpus[].Count); tests/policies/test_gpu.py checks every row against the copy moto ships.
# The pack keeps its own copy so `pulumi preview --policy-pack` needs nothing but pulumi-policy.
GPUS_PER_INSTANCE: dict[str, int] = {
    **{f"g4dn.{s}": 1 for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    "g4dn.12xlarge": 4, "g4dn.metal": 8,
    **{f"{fam}.{s}": 1 for fam in ("g5", "g6", "g6e") for s in ("xlarge", "2xlarge", "4xlarge", "8xlarge", "16xlarge")},
    **{f"{fam}.{s}": n for fam in ("g5", "g6", "g6e") for s, n in (("12xlarge", 4), ("24xlarge", 4), ("48xlarge", 8))},
    "p4d.24xlarge": 8, "p4de.24xlarge": 8,
    "p5.4xlarge": 1, "p5.48xlarge": 8, "p5e.48xlarge": 8, "p5en.48xlarge": 8,
    "p6-b200.48xlarge": 8,
}

# Instance families with NVIDIA GPUs: p* (p3 ... p6) and g*/gr* (g4dn ... g7e).
_GPU_FAMILY = re.compile(r"^(p\d|g\d|gr\d)")

GPU_TAG = "servekit:gpu"
COST_TAG = "servekit:monthly-cost-usd"
PURCHASE_TAG = "servekit:purchase"

# Resource types that accept `tags` (checked against the pulumi-aws SDK in tests/policies/test_tagging.py).
# Any other aws:* resource that has a `tags` input is treated as taggable too.
TAGGABLE: frozenset[str] = frozenset(
    {
        VPC, SUBNET, NAT_GATEWAY, INTERNET_GATEWAY, EGRESS_ONLY_IGW, SECURITY_GROUP, SG_INGRESS_RULE,
        DEFAULT_SECURITY_GROUP, VPC_ENDPOINT, LAUNCH_TEMPLATE, INSTANCE, CLUSTER, NODE_GROUP, KMS_KEY,
        LOG_GROUP, SNS_TOPIC, BUCKET, EBS_VOLUME,
        "aws:ec2/routeTable:RouteTable",
        "aws:ec2/eip:Eip",
        "aws:ec2/flowLog:FlowLog",
        "aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule",
        "aws:eks/addon:Addon",
        "aws:eks/podIdentityAssociation:PodIdentityAssociation",
        "aws:iam/role:Role",
        "aws:iam/policy:Policy",
        "aws:cloudwatch/metricAlarm:MetricAlarm",
        "aws:ecr/repository:Repository",
        "aws:secretsmanager/secret:Secret",
    }
)


def is_gpu_instance_type(instance_type: str) -> bool:
    return instance_type in GPUS_PER_INSTANCE or bool(_GPU_FAMILY.match(instance_type))


def provider_default_tags(provider: PolicyProviderResource | None) -> dict[str, Any] | Unknown:
    """The AWS provider's defaultTags.tags. Provider inputs arrive JSON-encoded for object values."""
    if provider is None:
        return {}
    doc = json_doc(get(provider.props, "defaultTags"))
    if isinstance(doc, Unknown):
        return doc
    return entries(doc, "tags", at=("provider", "defaultTags"))


def effective_tags(props: Any, provider: PolicyProviderResource | None, findings: Findings) -> dict[str, Any]:
    """Provider defaultTags overlaid with the resource's own tags (what AWS will store as tagsAll)."""
    merged: dict[str, Any] = {}
    defaults = provider_default_tags(provider)
    if isinstance(defaults, Unknown):
        findings.unknown(defaults)
    else:
        merged.update(defaults)
    own = entries(props, "tags")
    if isinstance(own, Unknown):
        findings.unknown(own)
    else:
        merged.update(own)
    return merged


def provider_region(provider: PolicyProviderResource | None) -> Any:
    return None if provider is None else text(get(provider.props, "region"))


def refers_to(res: PolicyResource, prop: str, target: PolicyResource) -> bool | Unknown:
    """Does ``res.<prop>`` point at ``target``?

    First by the engine's property dependencies (known even during preview), then by value: a known
    string equal to the target's id, name-like or ARN output.
    """
    if any(dep.urn == target.urn for dep in res.property_dependencies.get(prop, [])):
        return True
    value = get(res.props, prop)
    if isinstance(value, Unknown):
        return value
    if not isinstance(value, str):
        return False
    ids = {get(target.props, k) for k in ("id", "bucket", "arn")}
    return value in {i for i in ids if isinstance(i, str)}


def resources_of(resources: Iterable[PolicyResource], *types: str) -> list[PolicyResource]:
    return [r for r in resources if r.resource_type in types]


def instance_types(props: Any, f: Findings) -> list[str]:
    """A node group's known instanceTypes (unknown ones are recorded)."""
    return [t for t in iter_known(items(props, "instanceTypes"), f) if isinstance(t, str)]


def is_gpu_node_group(props: Any, tags: dict[str, Any], types: list[str]) -> bool:
    """A node group is a GPU group if it says so (servekit:gpu) or any of its instance types has GPUs."""
    return GPU_TAG in tags or any(is_gpu_instance_type(t) for t in types)
