"""Isolation: private endpoint, private nodes, no public IPs, no world-open ingress, no egress where forbidden."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)

from . import _aws as aws
from ._config import Schema, settings
from ._meta import AnyPolicy, resource_policy, stack_policy
from ._props import Findings, Unknown, entries, flag, get, is_world, items, iter_known, number, prefix_length

# ------------------------------------------------------------------ eks-endpoint-private

ENDPOINT_CONFIG: Schema = {
    "requirePrivateEndpoint": {
        "type": "boolean", "default": False,
        "description": "Refuse any public endpoint, even CIDR-limited (prod, regulated).",
    },
    "minPublicCidrPrefixLength": {
        "type": "integer", "default": 8, "minimum": 1, "maximum": 128,
        "description": "The broadest CIDR accepted in publicAccessCidrs (0.0.0.0/0 is always refused).",
    },
}


def _eks_endpoint(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.CLUSTER:
        return
    cfg = settings(args, ENDPOINT_CONFIG)
    f = Findings(report)
    public = flag(get(args.props, "vpcConfig", "endpointPublicAccess"))
    private = flag(get(args.props, "vpcConfig", "endpointPrivateAccess"))
    require_private = bool(cfg["requirePrivateEndpoint"])
    if isinstance(public, Unknown):
        f.unknown(public)
    elif public is not False:  # AWS enables the public endpoint when the input is unset
        if require_private:
            why = "is true" if public else "is unset, so AWS enables it"
            f.violation(f"vpcConfig.endpointPublicAccess {why}; this stack requires a private-only endpoint.")
        else:
            _check_public_cidrs(args, int(cfg["minPublicCidrPrefixLength"]), f)
    # Always required: without it nodes reach the API over the internet (CIS EKS 5.4.2 wants it enabled).
    if isinstance(private, Unknown):
        f.unknown(private)
    elif private is not True:
        f.violation("vpcConfig.endpointPrivateAccess must be true so nodes and operators reach the API inside the VPC.")
    f.done()


def _check_public_cidrs(args: ResourceValidationArgs, min_prefix: int, f: Findings) -> None:
    cidrs = items(args.props, "vpcConfig", "publicAccessCidrs")
    if not isinstance(cidrs, Unknown) and not cidrs:
        f.violation(
            "The public endpoint has no vpcConfig.publicAccessCidrs, so AWS opens it to 0.0.0.0/0; "
            "list the CIDRs that may reach the API."
        )
    for cidr in iter_known(cidrs, f):
        length = prefix_length(cidr)
        if length is None:
            f.violation(f"vpcConfig.publicAccessCidrs entry {cidr!r} is not a CIDR.")
        elif is_world(cidr) or length < min_prefix:
            f.violation(
                f"vpcConfig.publicAccessCidrs entry {cidr!r} is broader than /{min_prefix}; "
                "the endpoint is effectively open to the internet."
            )


eks_endpoint_private = resource_policy("eks-endpoint-private", _eks_endpoint, ENDPOINT_CONFIG)

# ------------------------------------------------------------------ eks-nodes-private-subnets


def _subnet_is_public(subnet: PolicyResource, f: Findings) -> bool:
    mapped = flag(get(subnet.props, "mapPublicIpOnLaunch"))
    if isinstance(mapped, Unknown):
        f.unknown(mapped)
    tags = entries(subnet.props, "tags")
    if isinstance(tags, Unknown):
        f.unknown(tags)
        tags = {}
    return mapped is True or "kubernetes.io/role/elb" in tags


def _nodes_private(args: StackValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    subnets = aws.resources_of(args.resources, aws.SUBNET)
    for ng in aws.resources_of(args.resources, aws.NODE_GROUP):
        placed = {d.urn: d for d in ng.property_dependencies.get("subnetIds", []) if d.resource_type == aws.SUBNET}
        ids = items(ng.props, "subnetIds")
        for sid in iter_known(ids, f):
            for s in subnets:
                if isinstance(sid, str) and sid == get(s.props, "id"):
                    placed[s.urn] = s
        if not placed and isinstance(ids, Unknown):
            continue  # recorded as unknown; nothing to check yet
        for s in placed.values():
            if _subnet_is_public(s, f):
                f.violation(
                    f"Node group {ng.name!r} is placed in public subnet {s.name!r} (mapPublicIpOnLaunch or "
                    "kubernetes.io/role/elb); worker nodes must live in private subnets.",
                    ng.urn,
                )
    f.done()


eks_nodes_private_subnets = stack_policy("eks-nodes-private-subnets", _nodes_private)

# ------------------------------------------------------------------ no-public-ip-on-nodes


def _no_public_ip(args: ResourceValidationArgs, report: ReportViolation) -> None:
    f = Findings(report)
    if args.resource_type == aws.LAUNCH_TEMPLATE:
        for i, nic in enumerate(iter_known(items(args.props, "networkInterfaces"), f)):
            value = flag(get(nic, "associatePublicIpAddress", at=("networkInterfaces", i)))
            if isinstance(value, Unknown):
                f.unknown(value)
            elif value is True:
                f.violation(f"networkInterfaces[{i}].associatePublicIpAddress is true; nodes must not get public IPs.")
    elif args.resource_type == aws.INSTANCE:
        value = flag(get(args.props, "associatePublicIpAddress"))
        if isinstance(value, Unknown):
            f.unknown(value)
        elif value is True:
            f.violation("associatePublicIpAddress is true; instances must not get public IPs.")
    f.done()


no_public_ip_on_nodes = resource_policy("no-public-ip-on-nodes", _no_public_ip)

# ------------------------------------------------------------------ no-world-open-ingress

INGRESS_CONFIG: Schema = {
    "allowedPublicPorts": {
        "type": "array", "items": {"type": "integer"}, "default": [],
        "description": "Ports that may be open to 0.0.0.0/0 (e.g. 443 on a public load balancer).",
    },
}


def _ports_allowed(rule: Any, allowed: set[int], f: Findings) -> bool:
    """True when the rule covers exactly one port and that port is allowed to be public."""
    if not allowed:
        return False
    lo, hi = number(get(rule, "fromPort")), number(get(rule, "toPort"))
    for v in (lo, hi):
        if isinstance(v, Unknown):
            f.unknown(v)
            return True  # undecidable now; re-checked at `pulumi up`
    return isinstance(lo, float) and lo == hi and int(lo) in allowed


def _ports(rule: Any) -> str:
    if get(rule, "protocol") in ("-1", "all") or get(rule, "ipProtocol") in ("-1", "all"):
        return "all ports"
    lo, hi = number(get(rule, "fromPort")), number(get(rule, "toPort"))
    if not isinstance(lo, float) or not isinstance(hi, float):
        return "all ports"
    return f"port {int(lo)}" if lo == hi else f"ports {int(lo)}-{int(hi)}"


def _world_sources(rule: Any, at: tuple[str | int, ...], f: Findings) -> list[str]:
    found: list[str] = []
    for key in ("cidrBlocks", "ipv6CidrBlocks"):
        for cidr in iter_known(items(rule, key, at=at), f):
            if is_world(cidr):
                found.append(cidr)
    return found


def _world_ingress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    allowed = {int(p) for p in settings(args, INGRESS_CONFIG)["allowedPublicPorts"]}
    f = Findings(report)
    t = args.resource_type
    if t in (aws.SECURITY_GROUP, aws.DEFAULT_SECURITY_GROUP):
        for i, rule in enumerate(iter_known(items(args.props, "ingress"), f)):
            at = ("ingress", i)
            world = _world_sources(rule, at, f)
            if world and not _ports_allowed(rule, allowed, f):
                f.violation(f"ingress[{i}] admits {', '.join(world)} on {_ports(rule)}.")
    elif t == aws.SECURITY_GROUP_RULE:
        kind = get(args.props, "type")
        if isinstance(kind, Unknown):
            f.unknown(kind)
        elif kind == "ingress":
            world = _world_sources(args.props, (), f)
            if world and not _ports_allowed(args.props, allowed, f):
                f.violation(f"Ingress rule admits {', '.join(world)} on {_ports(args.props)}.")
    elif t == aws.SG_INGRESS_RULE:
        for key in ("cidrIpv4", "cidrIpv6"):
            cidr = get(args.props, key)
            if isinstance(cidr, Unknown):
                f.unknown(cidr)
            elif is_world(cidr) and not _ports_allowed(args.props, allowed, f):
                f.violation(f"{key} {cidr} admits the whole internet on {_ports(args.props)}.")
    elif t == aws.NODE_GROUP:
        key = get(args.props, "remoteAccess", "ec2SshKey")
        sources = items(args.props, "remoteAccess", "sourceSecurityGroupIds")
        if isinstance(key, Unknown):
            f.unknown(key)
        elif key and not isinstance(sources, Unknown) and not sources:
            f.violation("remoteAccess.ec2SshKey without sourceSecurityGroupIds opens SSH (22) to 0.0.0.0/0.")
    f.done()


no_world_open_ingress = resource_policy("no-world-open-ingress", _world_ingress, INGRESS_CONFIG)

# ------------------------------------------------------------------ default-security-group-closed


def _default_sg(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != aws.DEFAULT_SECURITY_GROUP:
        return
    f = Findings(report)
    for direction in ("ingress", "egress"):
        rules = items(args.props, direction)
        if isinstance(rules, Unknown):
            f.unknown(rules)
        elif rules:
            f.violation(f"The default security group declares {len(rules)} {direction} rule(s); it must allow nothing.")
    f.done()


default_security_group_closed = resource_policy("default-security-group-closed", _default_sg)

# ------------------------------------------------------------------ no-egress-gateways

EGRESS_CONFIG: Schema = {
    "noEgress": {
        "type": "boolean", "default": False,
        "description": "The stack has no internet egress (servekit network.egress: none).",
    },
}


def _no_egress(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if not settings(args, EGRESS_CONFIG)["noEgress"]:
        return
    f = Findings(report)
    t = args.resource_type
    if t == aws.INTERNET_GATEWAY:
        f.violation("An internet gateway gives the VPC a route to the internet; this stack is configured noEgress.")
    elif t == aws.EGRESS_ONLY_IGW:
        f.violation("An egress-only internet gateway gives IPv6 internet egress; this stack is configured noEgress.")
    elif t == aws.NAT_GATEWAY:
        kind = get(args.props, "connectivityType")
        if isinstance(kind, Unknown):
            f.unknown(kind)
        elif kind != "private":
            f.violation("A public NAT gateway gives the nodes internet egress; this stack is configured noEgress.")
    f.done()


no_egress_gateways = resource_policy("no-egress-gateways", _no_egress, EGRESS_CONFIG)

# ------------------------------------------------------------------ vpc-endpoints-for-private-egress

ENDPOINTS_CONFIG: Schema = {
    "noEgress": EGRESS_CONFIG["noEgress"],
    "requiredServices": {
        "type": "array", "items": {"type": "string"},
        "default": ["ec2", "ecr.api", "ecr.dkr", "s3", "sts"],
        "description": "Service suffixes of com.amazonaws.<region>.<service> that need an endpoint.",
    },
}


def _vpc_endpoints(args: StackValidationArgs, report: ReportViolation) -> None:
    cfg = settings(args, ENDPOINTS_CONFIG)
    if not cfg["noEgress"]:
        return
    f = Findings(report)
    names: list[str] = []
    for ep in aws.resources_of(args.resources, aws.VPC_ENDPOINT):
        name = get(ep.props, "serviceName")
        if isinstance(name, Unknown):
            f.unknown(name)
        elif isinstance(name, str):
            names.append(name)
    missing = [s for s in cfg["requiredServices"] if not any(n.endswith(f".{s}") for n in names)]
    if missing and not f.unknowns:
        f.violation(
            f"The stack has no internet egress but no VPC endpoint for: {', '.join(missing)}. "
            "Nodes cannot register or pull images without them."
        )
    f.done()


vpc_endpoints_for_private_egress = stack_policy("vpc-endpoints-for-private-egress", _vpc_endpoints, ENDPOINTS_CONFIG)

POLICIES: list[AnyPolicy] = [
    eks_endpoint_private,
    eks_nodes_private_subnets,
    no_public_ip_on_nodes,
    no_world_open_ingress,
    default_security_group_closed,
    no_egress_gateways,
    vpc_endpoints_for_private_egress,
]
