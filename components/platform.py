"""The whole stack: network, cluster and GPU node groups, then whatever plugs into the platform.

Two steps, so that every user error stops before any resource exists:

1. :func:`plan_platform` (pure Python): the AZs, subnet CIDRs, node pools, instance-type offering
   checks, pod-address capacity, log retention and warnings, from the spec and the placements.
2. :class:`Platform` builds the AWS side from that plan and then runs the *extensions*.

Extension point
---------------
The Kubernetes-side, monitoring and SLA-gate components join the platform without editing it beyond
one line: a module listed in :data:`EXTENSION_MODULES` exposes ::

    def attach(ctx: PlatformContext) -> Mapping[str, Any] | None: ...

``attach`` creates its components with ``ctx.opts()`` (parent = the Platform, so they appear in the
resource tree and in ``servekit plan``) and ``ctx.k8s_opts()`` for Kubernetes objects (the cluster's
provider). ``ctx`` carries the spec, the placements, the plan, the network, cluster and GPU-node
components, the Kubernetes provider, the tags, the HF token secret and the outputs returned by the
extensions before it (in list order). What ``attach`` returns is merged into the stack outputs (a
``models`` entry replaces the placeholder endpoints).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components._common import base_tags
from components.cluster import Cluster, ClusterArgs
from components.gpu_nodes import GpuNodes, GpuNodesArgs, NodePool, plan_pools
from components.network import INTERFACE_ENDPOINTS, Network, NetworkArgs, SubnetPlan, plan_subnets
from servekit.catalog import Catalog, default_catalog
from servekit.offerings import network as instance_network
from servekit.offerings import usable_zones
from servekit.regions import vpc_zones
from servekit.sizing import Placement
from servekit.spec import DataClassification, DeploymentSpec, Egress, NodeOs
from servekit.topology import SYSTEM_NODES

# Modules whose ``attach(ctx)`` runs after the AWS side, in this order (later ones see earlier outputs).
EXTENSION_MODULES: tuple[str, ...] = (
    "components.vllm_service",  # the models: VllmService per placement, model store, image mirror, KEDA
    "components.monitoring",  # CloudWatch (Container Insights, PromQL SLA alarms), Prometheus, SNS alerts
    "components.sla_gate",  # slaGate: a Locust Job per model after each deploy; fails `pulumi up` unless PASS
)

# Pod-address demand per node: the VPC CNI (no prefix delegation) fills an ENI per (IPv4 per ENI - 1)
# pods and keeps one more ENI warm; pods per node are capped at 110 for the estimate.
POD_CAP = 110
LOG_RETENTION_DAYS = {"dev": 30, "staging": 90, "prod": 365}


def node_addresses(instance_type: str) -> int:
    """Worst-case VPC addresses one node of ``instance_type`` takes (its ENIs' IPv4 addresses)."""
    net = instance_network(instance_type)
    pods = min(net.max_pods, POD_CAP)
    enis = min(net.max_interfaces, -(-pods // (net.ipv4_per_interface - 1)) + 1)
    return enis * net.ipv4_per_interface


def log_retention_days(spec: DeploymentSpec) -> int:
    days = LOG_RETENTION_DAYS[spec.environment]
    if spec.tags.data_classification in (DataClassification.CONFIDENTIAL, DataClassification.RESTRICTED):
        days = max(days, 365)
    return days


@dataclass(frozen=True)
class PlatformPlan:
    """Everything decided before any resource: computed by :func:`plan_platform`."""

    cluster_name: str
    zones: tuple[str, ...]
    subnets: SubnetPlan
    system_zones: tuple[str, ...]
    pools: tuple[NodePool, ...]
    log_retention_days: int
    warnings: tuple[str, ...]

    def pools_for(self, model: str) -> list[NodePool]:
        return [p for p in self.pools if model in p.models]


def plan_platform(
    spec: DeploymentSpec, placements: Sequence[Placement], *, file: str | None = None, catalog: Catalog | None = None,
) -> PlatformPlan:
    """Zones, subnets, pools and checks; raises UserError (exit 2) on anything that cannot be built."""
    catalog = catalog or default_catalog()
    zones = tuple(vpc_zones(spec.region, spec.network.az_count))
    subnets = plan_subnets(spec.network, zones, file=file)
    system_zones = tuple(usable_zones(spec.cluster.system_instance_type, spec.region, zones,
                                      where="config.servekit:cluster.systemInstanceType", file=file))
    pools, warnings = plan_pools(spec, placements, catalog=catalog, vpc_zones=zones, file=file)

    demand = dict.fromkeys(zones, 0)
    detail: dict[str, list[str]] = {z: [] for z in zones}
    for z in system_zones:  # every pool could end up entirely in one zone: count its maximum there
        demand[z] += SYSTEM_NODES[2] * node_addresses(spec.cluster.system_instance_type)
    for pool in pools:
        per_node = max(node_addresses(t) for t in pool.instance_types)
        for z in pool.zones:
            demand[z] += pool.max_nodes * per_node
            detail[z].append(f"{pool.name}: {pool.max_nodes} x {per_node}")
    if spec.network.egress is Egress.NONE:
        for z in zones:
            demand[z] += len(INTERFACE_ENDPOINTS)
    subnets.check_capacity(demand, file=file, detail={z: "; ".join(d) for z, d in detail.items() if d})

    notes = [f"{p.name}: {w}" for p in placements for w in p.warnings]
    notes += warnings
    if spec.network.egress is Egress.NONE and spec.cluster.node_os is NodeOs.AL2023 and pools:
        notes.append("egress is none and nodes run AL2023: the NVIDIA device plugin image (nvcr.io) must come "
                     "from a mirror (GpuNodesArgs.device_plugin_image), or set cluster.nodeOs: bottlerocket")
    return PlatformPlan(
        cluster_name=f"servekit-{spec.stack}", zones=zones, subnets=subnets, system_zones=system_zones,
        pools=tuple(pools), log_retention_days=log_retention_days(spec), warnings=tuple(notes))


@dataclass(frozen=True)
class PlatformArgs:
    spec: DeploymentSpec
    placements: Sequence[Placement]
    plan: PlatformPlan
    hf_token: pulumi.Output[str] | None = None  # a Pulumi secret; only the Kubernetes side may use it
    device_plugin_image: str | None = None


@dataclass
class PlatformContext:
    """What an extension's ``attach`` gets."""

    platform: Platform
    spec: DeploymentSpec
    placements: Sequence[Placement]
    plan: PlatformPlan
    network: Network
    cluster: Cluster
    gpu_nodes: GpuNodes
    k8s_provider: k8s.Provider
    tags: Mapping[str, str]
    account_id: pulumi.Output[str]
    partition: pulumi.Output[str]
    hf_token: pulumi.Output[str] | None
    outputs: dict[str, Any] = field(default_factory=dict)

    def opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Options for a component an extension creates: parented to the Platform."""
        return pulumi.ResourceOptions(parent=self.platform, **kwargs)

    def k8s_opts(self, **kwargs: Any) -> pulumi.ResourceOptions:
        """Like :meth:`opts`, with the cluster's Kubernetes provider (pass to a component: it inherits)."""
        return pulumi.ResourceOptions(parent=self.platform, providers={"kubernetes": self.k8s_provider}, **kwargs)


Extension = Callable[[PlatformContext], Mapping[str, Any] | None]


def load_extensions(modules: Sequence[str] | None = None) -> list[Extension]:
    """The ``attach`` functions of ``modules`` (default: :data:`EXTENSION_MODULES`, read at call time)."""
    out: list[Extension] = []
    for mod in EXTENSION_MODULES if modules is None else modules:
        attach = getattr(importlib.import_module(mod), "attach", None)
        if not callable(attach):
            raise TypeError(f"{mod} is listed in EXTENSION_MODULES but defines no attach(ctx)")
        out.append(attach)
    return out


class Platform(pulumi.ComponentResource):
    """Network + Cluster + GpuNodes from a :class:`PlatformPlan`, then the extensions."""

    network: Network
    cluster: Cluster
    gpu_nodes: GpuNodes
    outputs: dict[str, Any]

    def __init__(self, name: str, args: PlatformArgs, opts: pulumi.ResourceOptions | None = None,
                 extensions: Sequence[Extension] | None = None) -> None:
        super().__init__("servekit:platform:Platform", name, {}, opts)
        spec, plan = args.spec, args.plan
        tags = base_tags(spec)
        parent = pulumi.ResourceOptions(parent=self)
        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        partition = aws.get_partition_output(opts=pulumi.InvokeOutputOptions(parent=self)).partition

        self.network = Network(f"{name}-network", NetworkArgs(
            stack=spec.stack, region=spec.region, network=spec.network, subnets=plan.subnets,
            cluster_name=plan.cluster_name, single_nat=spec.nat_gateways == 1, tags=tags,
            log_retention_days=plan.log_retention_days, account_id=identity.account_id, partition=partition,
        ), parent)
        self.cluster = Cluster(f"{name}-cluster", ClusterArgs(
            stack=spec.stack, cluster_name=plan.cluster_name, region=spec.region, cluster=spec.cluster,
            vpc_id=self.network.vpc_id, vpc_cidr=plan.subnets.vpc_cidr, service_cidr=plan.subnets.service_cidr,
            subnet_ids=[self.network.private_subnet_ids[z] for z in plan.zones], tags=tags,
            log_retention_days=plan.log_retention_days, deletion_protection=spec.environment == "prod",
            account_id=identity.account_id, partition=partition,
        ), parent)
        self.gpu_nodes = GpuNodes(f"{name}-gpu", GpuNodesArgs(
            pools=plan.pools, node_os=spec.cluster.node_os, cluster_name=self.cluster.name,
            node_role_arn=self.cluster.node_role_arn, subnet_ids=self.network.private_subnet_ids, tags=tags,
            k8s_provider=self.cluster.k8s_provider,
            depends_on=[*self.cluster.addons.values(), self.cluster.system_node_group],
            device_plugin_image=args.device_plugin_image,
        ), parent)

        ctx = PlatformContext(
            platform=self, spec=spec, placements=args.placements, plan=plan, network=self.network,
            cluster=self.cluster, gpu_nodes=self.gpu_nodes, k8s_provider=self.cluster.k8s_provider, tags=tags,
            account_id=identity.account_id, partition=partition, hf_token=args.hf_token)
        for attach in load_extensions() if extensions is None else extensions:
            ctx.outputs.update(attach(ctx) or {})
        self.outputs = ctx.outputs
        self.register_outputs({
            "clusterName": self.cluster.name,
            "vpcId": self.network.vpc_id,
            "nodeGroups": {n: g.node_group_name for n, g in self.gpu_nodes.node_groups.items()},
        })
