"""The VPC: private node subnets over N AZs, egress by NAT or none at all, flow logs, endpoints.

- Node subnets are private and never map public IPs. Public subnets, the internet gateway and NAT
  gateways exist only with ``egress: nat`` (one NAT per AZ, or a single one for ``environment: dev``).
- With ``egress: none`` nothing routes to the internet: an S3 gateway endpoint (ECR image layers and
  the model store) and interface endpoints with private DNS for every AWS API nodes and add-ons call.
  The S3 gateway endpoint is created with NAT egress too: it is free and keeps S3 traffic off the NAT.
- VPC flow logs (all traffic) go to a CloudWatch log group encrypted with a customer KMS key.
- The VPC's default security group is emptied (no rules), so nothing uses it by accident.

Subnet CIDRs are derived deterministically from the VPC CIDR (:func:`plan_subnets`), checked for
overlap, for overlap with the cluster's service CIDR, and for enough addresses for pods
(:meth:`SubnetPlan.check_capacity`) before any resource exists.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components._common import child, kms_key_policy, with_tags
from servekit.errors import UserError
from servekit.spec import Egress, NetworkSpec
from servekit.topology import INTERFACE_ENDPOINTS

# AWS keeps 5 addresses of every subnet (network, router, DNS, future, broadcast).
AWS_RESERVED_PER_SUBNET = 5
# Kubernetes service CIDRs EKS would choose from; must not overlap the VPC.
SERVICE_CIDRS = ("172.20.0.0/16", "10.100.0.0/16")


@dataclass(frozen=True)
class SubnetPlan:
    """CIDRs of every subnet, derived from the VPC CIDR; zone -> CIDR."""

    vpc_cidr: str
    zones: tuple[str, ...]
    private: Mapping[str, str]
    public: Mapping[str, str]
    service_cidr: str

    def usable_addresses(self, zone: str) -> int:
        return ipaddress.IPv4Network(self.private[zone]).num_addresses - AWS_RESERVED_PER_SUBNET

    def check_capacity(self, demand: Mapping[str, int], *, file: str | None = None,
                       detail: Mapping[str, str] | None = None) -> None:
        """Raise a UserError when a zone's node subnet cannot hold ``demand[zone]`` addresses."""
        for zone in self.zones:
            need = demand.get(zone, 0)
            have = self.usable_addresses(zone)
            if need > have:
                why = f" ({detail[zone]})" if detail and zone in detail else ""
                raise UserError(
                    f"the node subnet of {zone} ({self.private[zone]}) has {have} usable addresses but nodes and "
                    f"pods there may need {need}{why}", file=file, path="config.servekit:network.vpcCidr",
                    given=self.vpc_cidr, allowed="a larger VPC (down to /16), or more AZs (network.azCount)")


def plan_subnets(network: NetworkSpec, zones: Sequence[str], *, file: str | None = None) -> SubnetPlan:
    """Split the VPC: N equal private blocks first, public /24s (or smaller) from the next free block.

    With ``b = ceil(log2(N + 1))`` the VPC is cut into ``2**b`` blocks; blocks ``0..N-1`` are the
    node subnets (the largest equal size that still leaves a free block), and the public subnets,
    only for NAT egress, come from block ``N``. The rest stays free for later.
    """
    vpc = ipaddress.IPv4Network(network.vpc_cidr)
    n = len(zones)
    if n < 1:
        raise UserError("the VPC needs at least one availability zone", file=file,
                        path="config.servekit:network.azCount")
    bits = math.ceil(math.log2(n + 1))
    blocks = list(vpc.subnets(prefixlen_diff=bits))
    private = dict(zip(zones, (str(b) for b in blocks[:n]), strict=True))
    public: dict[str, str] = {}
    if network.egress is Egress.NAT:
        free = blocks[n]
        prefix = max(free.prefixlen + math.ceil(math.log2(n)) if n > 1 else free.prefixlen, 24)
        if prefix > 28:
            raise UserError("the VPC is too small for public subnets", file=file,
                            path="config.servekit:network.vpcCidr", given=network.vpc_cidr)
        public = dict(zip(zones, (str(s) for s in list(free.subnets(new_prefix=prefix))[:n]), strict=True))
    nets = [ipaddress.IPv4Network(c) for c in (*private.values(), *public.values())]
    for i, a in enumerate(nets):
        if not a.subnet_of(vpc):
            raise AssertionError(f"subnet {a} outside the VPC {vpc}")
        for b in nets[i + 1:]:
            if a.overlaps(b):
                raise AssertionError(f"subnets {a} and {b} overlap")
    service = next((c for c in SERVICE_CIDRS if not ipaddress.IPv4Network(c).overlaps(vpc)), None)
    if service is None:
        raise UserError("the VPC CIDR overlaps both Kubernetes service ranges EKS can use", file=file,
                        path="config.servekit:network.vpcCidr", given=network.vpc_cidr,
                        allowed=f"a range overlapping neither {' nor '.join(SERVICE_CIDRS)}")
    return SubnetPlan(vpc_cidr=str(vpc), zones=tuple(zones), private=private, public=public, service_cidr=service)


@dataclass(frozen=True)
class NetworkArgs:
    stack: str
    region: str
    network: NetworkSpec
    subnets: SubnetPlan
    cluster_name: str  # for the kubernetes.io/cluster/<name> subnet tag
    single_nat: bool  # one NAT gateway for all AZs (dev) instead of one per AZ
    tags: Mapping[str, str]
    log_retention_days: int
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]


class Network(pulumi.ComponentResource):
    """VPC, subnets, routing, egress, endpoints, flow logs and the emptied default security group."""

    vpc_id: pulumi.Output[str]
    private_subnet_ids: dict[str, pulumi.Output[str]]  # zone -> subnet id
    public_subnet_ids: dict[str, pulumi.Output[str]]
    private_route_table_ids: list[pulumi.Output[str]]
    endpoint_security_group_id: pulumi.Output[str] | None
    flow_log_group_name: pulumi.Output[str]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:network:Network", name, {}, opts)
        tags = args.tags
        plan = args.subnets

        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=plan.vpc_cidr, enable_dns_support=True,
                          enable_dns_hostnames=True, tags=with_tags(tags, Name=f"{name}-vpc"), opts=child(self))
        self.vpc_id = vpc.id
        aws.ec2.DefaultSecurityGroup(f"{name}-default-sg", vpc_id=vpc.id, ingress=[], egress=[],
                                     tags=with_tags(tags, Name=f"{name}-default-sg-emptied"), opts=child(self))

        elb_tag = {f"kubernetes.io/cluster/{args.cluster_name}": "shared"}
        self.private_subnet_ids = {}
        private_subnets: dict[str, aws.ec2.Subnet] = {}
        for i, zone in enumerate(plan.zones):
            sn = aws.ec2.Subnet(
                f"{name}-nodes-{zone}", vpc_id=vpc.id, cidr_block=plan.private[zone], availability_zone=zone,
                map_public_ip_on_launch=False,
                tags=with_tags(tags, Name=f"{name}-nodes-{zone}", **elb_tag, **{"kubernetes.io/role/internal-elb": "1",
                               "servekit:subnet": "nodes", "servekit:zone-index": str(i)}),
                opts=child(self))
            private_subnets[zone] = sn
            self.private_subnet_ids[zone] = sn.id

        self.public_subnet_ids = {}
        nat_by_zone: dict[str, aws.ec2.NatGateway] = {}
        if args.network.egress is Egress.NAT:
            igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags=with_tags(tags, Name=f"{name}-igw"),
                                          opts=child(self))
            public_rt = aws.ec2.RouteTable(f"{name}-public-rt", vpc_id=vpc.id,
                                           tags=with_tags(tags, Name=f"{name}-public-rt"), opts=child(self))
            aws.ec2.Route(f"{name}-public-default", route_table_id=public_rt.id, destination_cidr_block="0.0.0.0/0",
                          gateway_id=igw.id, opts=child(self))
            nat_zones = plan.zones[:1] if args.single_nat else plan.zones
            for zone in plan.zones:
                pub = aws.ec2.Subnet(
                    f"{name}-public-{zone}", vpc_id=vpc.id, cidr_block=plan.public[zone], availability_zone=zone,
                    map_public_ip_on_launch=False,  # only NAT gateways (with their EIPs) live here
                    tags=with_tags(tags, Name=f"{name}-public-{zone}", **elb_tag,
                                   **{"kubernetes.io/role/elb": "1", "servekit:subnet": "public"}),
                    opts=child(self))
                self.public_subnet_ids[zone] = pub.id
                aws.ec2.RouteTableAssociation(f"{name}-public-{zone}", subnet_id=pub.id, route_table_id=public_rt.id,
                                              opts=child(self))
                if zone in nat_zones:
                    eip = aws.ec2.Eip(f"{name}-nat-{zone}", domain="vpc",
                                      tags=with_tags(tags, Name=f"{name}-nat-{zone}"),
                                      opts=child(self, depends_on=[igw]))
                    nat_by_zone[zone] = aws.ec2.NatGateway(
                        f"{name}-nat-{zone}", allocation_id=eip.id, subnet_id=pub.id, connectivity_type="public",
                        tags=with_tags(tags, Name=f"{name}-nat-{zone}"), opts=child(self, depends_on=[igw]))

        self.private_route_table_ids = []
        for zone in plan.zones:
            rt = aws.ec2.RouteTable(f"{name}-nodes-rt-{zone}", vpc_id=vpc.id,
                                    tags=with_tags(tags, Name=f"{name}-nodes-rt-{zone}"), opts=child(self))
            self.private_route_table_ids.append(rt.id)
            aws.ec2.RouteTableAssociation(f"{name}-nodes-{zone}", subnet_id=private_subnets[zone].id,
                                          route_table_id=rt.id, opts=child(self))
            if nat_by_zone:
                nat = nat_by_zone.get(zone) or next(iter(nat_by_zone.values()))
                aws.ec2.Route(f"{name}-nodes-default-{zone}", route_table_id=rt.id,
                              destination_cidr_block="0.0.0.0/0", nat_gateway_id=nat.id, opts=child(self))

        aws.ec2.VpcEndpoint(f"{name}-s3", vpc_id=vpc.id, service_name=f"com.amazonaws.{args.region}.s3",
                            vpc_endpoint_type="Gateway", route_table_ids=self.private_route_table_ids,
                            tags=with_tags(tags, Name=f"{name}-s3"), opts=child(self))

        self.endpoint_security_group_id = None
        if args.network.egress is Egress.NONE:
            sg = aws.ec2.SecurityGroup(
                f"{name}-endpoints", vpc_id=vpc.id, description="HTTPS from the VPC to interface endpoints",
                ingress=[aws.ec2.SecurityGroupIngressArgs(
                    protocol="tcp", from_port=443, to_port=443, cidr_blocks=[plan.vpc_cidr],
                    description="HTTPS from the VPC")],
                egress=[],
                tags=with_tags(tags, Name=f"{name}-endpoints"), opts=child(self))
            self.endpoint_security_group_id = sg.id
            subnet_ids = [private_subnets[z].id for z in plan.zones]
            for service in INTERFACE_ENDPOINTS:
                aws.ec2.VpcEndpoint(
                    f"{name}-{service.replace('.', '-')}", vpc_id=vpc.id,
                    service_name=f"com.amazonaws.{args.region}.{service}", vpc_endpoint_type="Interface",
                    private_dns_enabled=True, subnet_ids=subnet_ids, security_group_ids=[sg.id],
                    tags=with_tags(tags, Name=f"{name}-{service}"), opts=child(self))

        log_group_name = f"/servekit/{args.stack}/vpc-flow-logs"
        key = aws.kms.Key(
            f"{name}-flow-logs", description=f"servekit {args.stack}: VPC flow logs", enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=pulumi.Output.all(args.account_id, args.partition).apply(
                lambda ap: kms_key_policy(ap[0], ap[1], args.region,
                                          f"arn:{ap[1]}:logs:{args.region}:{ap[0]}:log-group:{log_group_name}")),
            tags=with_tags(tags, Name=f"{name}-flow-logs"), opts=child(self))
        log_group = aws.cloudwatch.LogGroup(f"{name}-flow-logs", name=log_group_name, kms_key_id=key.arn,
                                            retention_in_days=args.log_retention_days, tags=tags, opts=child(self))
        self.flow_log_group_name = log_group.name
        role = aws.iam.Role(
            f"{name}-flow-logs",
            assume_role_policy=pulumi.Output.from_input(args.account_id).apply(lambda acct: json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow", "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                               "Action": "sts:AssumeRole",
                               "Condition": {"StringEquals": {"aws:SourceAccount": acct}}}],
            }, sort_keys=True)),
            tags=tags, opts=child(self))
        aws.iam.RolePolicy(
            f"{name}-flow-logs", role=role.id,
            policy=log_group.arn.apply(lambda arn: json.dumps({
                "Version": "2012-10-17",
                "Statement": [{"Effect": "Allow",
                               "Action": ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogGroups",
                                          "logs:DescribeLogStreams"],
                               "Resource": [arn, f"{arn}:*"]}],
            }, sort_keys=True)),
            opts=child(self))
        aws.ec2.FlowLog(f"{name}-flow-logs", vpc_id=vpc.id, traffic_type="ALL", log_destination_type="cloud-watch-logs",
                        log_destination=log_group.arn, iam_role_arn=role.arn, max_aggregation_interval=60,
                        tags=with_tags(tags, Name=f"{name}-flow-logs"), opts=child(self))

        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "publicSubnetIds": self.public_subnet_ids,
            "flowLogGroupName": self.flow_log_group_name,
        })
