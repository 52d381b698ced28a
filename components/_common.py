"""Helpers every component shares: tags, child options, node launch templates, IAM/KMS policy JSON.

Kept out of ``components/__init__.py`` so that the helpers import the same way whether ``components``
is a regular package or (in an editable install made before it had an ``__init__``) a namespace one.
"""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_aws

from servekit.spec import DeploymentSpec

# Tag keys every taggable AWS resource carries (policies read them at preview time).
TAG_OWNER = "owner"
TAG_COST_CENTER = "cost-center"
TAG_DATA_CLASSIFICATION = "data-classification"
TAG_STACK = "servekit:stack"
# Node groups and launch templates add these.
TAG_GPU = "servekit:gpu"
TAG_PURCHASE = "servekit:purchase"
TAG_MODEL = "servekit:model"
TAG_MONTHLY_COST = "servekit:monthly-cost-usd"


def base_tags(spec: DeploymentSpec) -> dict[str, str]:
    """The tags every taggable AWS resource of the stack gets."""
    return {
        TAG_OWNER: spec.tags.owner,
        TAG_COST_CENTER: spec.tags.cost_center,
        TAG_DATA_CLASSIFICATION: spec.tags.data_classification.value,
        TAG_STACK: spec.stack,
    }


def with_tags(tags: Mapping[str, str], **more: str) -> dict[str, str]:
    """``tags`` plus a ``Name`` (or other extra) tag, as a new dict."""
    out = dict(tags)
    out.update(more)
    return out


def child(parent: pulumi.Resource, **kwargs: object) -> pulumi.ResourceOptions:
    """Options for a child: ``parent`` set, anything else passed through."""
    return pulumi.ResourceOptions(parent=parent, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- shared AWS building blocks

# IMDSv2 only, and a hop limit of 1: a pod's packets to 169.254.169.254 cross one more hop (the pod's
# network namespace), so with 1 only host-network processes (kubelet, the VPC CNI, the Pod Identity
# agent) reach the instance metadata service. Pods cannot borrow the node role's credentials; they get
# their own through EKS Pod Identity (which does not use IMDS). An add-on that reads its region from
# IMDS must be given it explicitly instead.
IMDS_HOP_LIMIT = 1


def kms_key_policy(account_id: str, partition: str, region: str, log_group_arn_pattern: str | None = None) -> str:
    """Key policy: the account administers the key (IAM decides who uses it); optionally CloudWatch Logs
    may use it, but only for log groups matching ``log_group_arn_pattern``."""
    import json

    root = f"arn:{partition}:iam::{account_id}:root"
    statements: list[dict[str, object]] = [
        {"Sid": "AccountAdministers", "Effect": "Allow", "Principal": {"AWS": root}, "Action": "kms:*",
         "Resource": "*"},
    ]
    if log_group_arn_pattern is not None:
        statements.append({
            "Sid": "CloudWatchLogsUse", "Effect": "Allow", "Principal": {"Service": f"logs.{region}.amazonaws.com"},
            "Action": ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"],
            "Resource": "*",
            "Condition": {"ArnLike": {"kms:EncryptionContext:aws:logs:arn": log_group_arn_pattern}},
        })
    return json.dumps({"Version": "2012-10-17", "Statement": statements}, sort_keys=True)


def assume_role_policy(service: str, *, tag_session: bool = False) -> str:
    """Trust policy letting an AWS service principal assume a role."""
    import json

    actions: list[str] = ["sts:AssumeRole", "sts:TagSession"] if tag_session else ["sts:AssumeRole"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": service}, "Action": actions}],
    }, sort_keys=True)


# Bottlerocket keeps the OS on /dev/xvda and containers, images and pod storage on /dev/xvdb; AL2023 has
# one root volume (/dev/xvda). The OS volume must be at least the AMI's snapshot.
BOTTLEROCKET_OS_VOLUME_GIB = 8


def node_launch_template(
    name: str,
    *,
    parent: pulumi.Resource,
    bottlerocket: bool,
    volume_gib: int,
    tags: Mapping[str, str],
    iops: int | None = None,
    throughput_mibps: int | None = None,
    instance_type: str | None = None,
    market_type: str | None = None,
    reservation_id: str | None = None,
    reservation_resource_group_arn: str | None = None,
) -> pulumi_aws.ec2.LaunchTemplate:
    """A node launch template: IMDSv2 required (hop limit 1), encrypted gp3 volumes, tags on instances.

    It deliberately sets no network interfaces: with a ``NetworkInterfaces`` block EKS would no longer
    attach the cluster security group, and the node subnets already refuse public IPs
    (``mapPublicIpOnLaunch: false``). No AMI either: the node group's ``amiType`` picks the EKS-optimized
    image and its bootstrap.
    """
    def volume(device: str, size: int, iops: int | None = None,
               throughput: int | None = None) -> pulumi_aws.ec2.LaunchTemplateBlockDeviceMappingArgs:
        return pulumi_aws.ec2.LaunchTemplateBlockDeviceMappingArgs(
            device_name=device,
            ebs=pulumi_aws.ec2.LaunchTemplateBlockDeviceMappingEbsArgs(
                volume_type="gp3", volume_size=size, encrypted="true", delete_on_termination="true", iops=iops,
                throughput=throughput))

    if bottlerocket:
        mappings = [volume("/dev/xvda", BOTTLEROCKET_OS_VOLUME_GIB),
                    volume("/dev/xvdb", volume_gib, iops, throughput_mibps)]
    else:
        mappings = [volume("/dev/xvda", volume_gib, iops, throughput_mibps)]
    market = (pulumi_aws.ec2.LaunchTemplateInstanceMarketOptionsArgs(market_type=market_type)
              if market_type else None)
    reservation = None
    if reservation_id or reservation_resource_group_arn:
        reservation = pulumi_aws.ec2.LaunchTemplateCapacityReservationSpecificationArgs(
            capacity_reservation_target=pulumi_aws.ec2.LaunchTemplateCapacityReservationSpecificationCapacityReservationTargetArgs(
                capacity_reservation_id=reservation_id,
                capacity_reservation_resource_group_arn=reservation_resource_group_arn))
    return pulumi_aws.ec2.LaunchTemplate(
        name,
        description=f"servekit node launch template ({name})",
        instance_type=instance_type,
        metadata_options=pulumi_aws.ec2.LaunchTemplateMetadataOptionsArgs(
            http_endpoint="enabled", http_tokens="required", http_put_response_hop_limit=IMDS_HOP_LIMIT,
            instance_metadata_tags="disabled"),
        block_device_mappings=mappings,
        instance_market_options=market,
        capacity_reservation_specification=reservation,
        monitoring=pulumi_aws.ec2.LaunchTemplateMonitoringArgs(enabled=True),
        tag_specifications=[
            pulumi_aws.ec2.LaunchTemplateTagSpecificationArgs(resource_type=kind, tags=dict(tags))
            for kind in ("instance", "volume", "network-interface")
        ],
        update_default_version=True,
        tags=dict(tags),
        opts=pulumi.ResourceOptions(parent=parent),
    )
