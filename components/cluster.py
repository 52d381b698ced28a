"""EKS: a private (or allowlisted) control plane, encrypted secrets, logged, with pinned add-ons.

- Endpoint: always private; public only with an explicit CIDR allowlist (0.0.0.0/0 is refused by the
  spec). A security group lets HTTPS in from the VPC so runners inside it can reach a private endpoint.
- Secrets envelope-encrypted with a customer KMS key (rotation on); control-plane logs ``api``,
  ``audit`` and ``authenticator`` into a pre-created log group (KMS, retention) so neither is left to
  EKS's defaults.
- IAM: a cluster role (AmazonEKSClusterPolicy + use of its key), a node role (worker-node and ECR
  pull-only policies). The VPC CNI and EBS CSI get their own roles through EKS Pod Identity, so the
  node role carries no CNI or EBS permissions.
- Access: API authentication mode; the identity running ``pulumi up`` gets admin at creation (the
  program installs Kubernetes objects right after), plus an access entry for ``cluster.adminRoleArn``.
- A small on-demand CPU system node group for controllers (CoreDNS, EBS CSI, KEDA, ...).
- Add-ons vpc-cni, kube-proxy, eks-pod-identity-agent, coredns, aws-ebs-csi-driver at pinned versions.
- ``k8s_provider``: a ``pulumi_kubernetes.Provider`` whose kubeconfig is built here from the cluster's
  endpoint and CA, authenticating with ``aws eks get-token`` (no credential is stored in it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components._common import assume_role_policy, child, kms_key_policy, node_launch_template, with_tags
from servekit.spec import ClusterSpec, NodeOs
from servekit.topology import SYSTEM_NODES

# Add-on versions per Kubernetes version ("latest version of the Amazon EKS add-on type" tables).
# kube-proxy and coredns: EKS User Guide, managing-kube-proxy / managing-coredns (read 2026-11-27);
# vpc-cni, eks-pod-identity-agent, aws-ebs-csi-driver: a public CDK EKS configuration pinning 1.34/1.35
# (read 2026-11-27) - (U) for 1.36, where the same builds are assumed. Verify with
# `aws eks describe-addon-versions --kubernetes-version <v> --addon-name <name>` before upgrading.
ADDON_VERSIONS: dict[str, dict[str, str]] = {
    "1.34": {"vpc-cni": "v1.23.0-eksbuild.1", "kube-proxy": "v1.34.6-eksbuild.18",
             "eks-pod-identity-agent": "v1.4.0-eksbuild.1", "coredns": "v1.13.2-eksbuild.11",
             "aws-ebs-csi-driver": "v1.63.1-eksbuild.1"},
    "1.35": {"vpc-cni": "v1.23.0-eksbuild.1", "kube-proxy": "v1.35.3-eksbuild.18",
             "eks-pod-identity-agent": "v1.4.0-eksbuild.1", "coredns": "v1.14.3-eksbuild.3",
             "aws-ebs-csi-driver": "v1.63.1-eksbuild.1"},
    "1.36": {"vpc-cni": "v1.23.0-eksbuild.1", "kube-proxy": "v1.36.0-eksbuild.14",
             "eks-pod-identity-agent": "v1.4.0-eksbuild.1", "coredns": "v1.14.3-eksbuild.3",
             "aws-ebs-csi-driver": "v1.63.1-eksbuild.1"},
}
CONTROL_PLANE_LOGS = ("api", "audit", "authenticator")
SYSTEM_VOLUME_GIB = 50
SYSTEM_AMI = {NodeOs.AL2023: "AL2023_x86_64_STANDARD", NodeOs.BOTTLEROCKET: "BOTTLEROCKET_x86_64"}
SYSTEM_NODE_SELECTOR = {"servekit.io/pool": "system"}  # where controllers (KEDA, operators) should run
CLUSTER_ADMIN_POLICY = "arn:{partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"


@dataclass(frozen=True)
class ClusterArgs:
    stack: str
    cluster_name: str
    region: str
    cluster: ClusterSpec
    vpc_id: pulumi.Input[str]
    vpc_cidr: str
    service_cidr: str
    subnet_ids: Sequence[pulumi.Input[str]]  # the private node subnets (control-plane ENIs and system nodes)
    tags: Mapping[str, str]
    log_retention_days: int
    deletion_protection: bool
    account_id: pulumi.Input[str]
    partition: pulumi.Input[str]


def kubeconfig(cluster_name: str, endpoint: str, ca_data: str, region: str) -> str:
    """A kubeconfig that authenticates with ``aws eks get-token`` (the caller's AWS credentials)."""
    user = {"exec": {"apiVersion": "client.authentication.k8s.io/v1beta1", "command": "aws",
                     "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region,
                              "--output", "json"],
                     "interactiveMode": "Never"}}
    return json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": cluster_name, "preferences": {},
        "clusters": [{"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}],
        "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
        "users": [{"name": cluster_name, "user": user}],
    }, sort_keys=True)


def _managed(partition: pulumi.Input[str], policy: str) -> pulumi.Output[str]:
    return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", policy)


class Cluster(pulumi.ComponentResource):
    """The EKS control plane, its IAM, logging, encryption, system nodes, add-ons and a k8s provider."""

    name: pulumi.Output[str]
    endpoint: pulumi.Output[str]
    certificate_authority: pulumi.Output[str]
    kubeconfig: pulumi.Output[str]
    k8s_provider: k8s.Provider
    node_role_arn: pulumi.Output[str]
    node_role_name: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    security_group_id: pulumi.Output[str]  # the EKS-managed cluster security group (nodes use it)
    system_node_group: aws.eks.NodeGroup
    addons: dict[str, aws.eks.Addon]

    def __init__(self, name: str, args: ClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:cluster:Cluster", name, {}, opts)
        tags = args.tags
        spec = args.cluster
        versions = ADDON_VERSIONS[spec.version]
        log_group_name = f"/aws/eks/{args.cluster_name}/cluster"

        key = aws.kms.Key(
            f"{name}-secrets", description=f"servekit {args.stack}: EKS secrets and control-plane logs",
            enable_key_rotation=True, deletion_window_in_days=30,
            policy=pulumi.Output.all(args.account_id, args.partition).apply(
                lambda ap: kms_key_policy(ap[0], ap[1], args.region,
                                          f"arn:{ap[1]}:logs:{args.region}:{ap[0]}:log-group:{log_group_name}")),
            tags=with_tags(tags, Name=f"{name}-secrets"), opts=child(self))
        aws.kms.Alias(f"{name}-secrets", name=f"alias/servekit-{args.stack}-eks", target_key_id=key.key_id,
                      opts=child(self))
        self.kms_key_arn = key.arn
        log_group = aws.cloudwatch.LogGroup(f"{name}-control-plane", name=log_group_name, kms_key_id=key.arn,
                                            retention_in_days=args.log_retention_days, tags=tags, opts=child(self))

        cluster_role = aws.iam.Role(f"{name}-cluster", assume_role_policy=assume_role_policy(
            "eks.amazonaws.com", tag_session=True), tags=tags, opts=child(self))
        cluster_policy = aws.iam.RolePolicyAttachment(
            f"{name}-cluster-policy", role=cluster_role.name,
            policy_arn=_managed(args.partition, "AmazonEKSClusterPolicy"), opts=child(self))
        cluster_kms = aws.iam.RolePolicy(f"{name}-cluster-kms", role=cluster_role.id, policy=key.arn.apply(
            lambda arn: json.dumps({"Version": "2012-10-17", "Statement": [{
                "Effect": "Allow", "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey",
                                              "kms:CreateGrant"], "Resource": arn}]}, sort_keys=True)),
            opts=child(self))

        api_sg = aws.ec2.SecurityGroup(
            f"{name}-api", vpc_id=args.vpc_id, description="HTTPS to the Kubernetes API from inside the VPC",
            ingress=[aws.ec2.SecurityGroupIngressArgs(protocol="tcp", from_port=443, to_port=443,
                                                      cidr_blocks=[args.vpc_cidr], description="VPC to API")],
            egress=[], tags=with_tags(tags, Name=f"{name}-api"), opts=child(self))

        eks = aws.eks.Cluster(
            f"{name}-eks",
            name=args.cluster_name,
            version=spec.version,
            role_arn=cluster_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=list(args.subnet_ids),
                endpoint_private_access=True,
                endpoint_public_access=spec.endpoint_public,
                public_access_cidrs=list(spec.public_access_cidrs) if spec.endpoint_public else None,
                security_group_ids=[api_sg.id],
            ),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=key.arn), resources=["secrets"]),
            enabled_cluster_log_types=list(CONTROL_PLANE_LOGS),
            access_config=aws.eks.ClusterAccessConfigArgs(authentication_mode="API",
                                                          bootstrap_cluster_creator_admin_permissions=True),
            kubernetes_network_config=aws.eks.ClusterKubernetesNetworkConfigArgs(
                service_ipv4_cidr=args.service_cidr, ip_family="ipv4"),
            bootstrap_self_managed_addons=False,  # the pinned EKS add-ons below replace them
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type="STANDARD"),
            deletion_protection=args.deletion_protection,
            tags=tags,
            opts=child(self, depends_on=[log_group, cluster_policy, cluster_kms]),
        )
        self.name = eks.name
        self.endpoint = eks.endpoint
        self.certificate_authority = eks.certificate_authority.apply(lambda ca: ca.data or "")
        self.security_group_id = eks.vpc_config.apply(lambda v: v.cluster_security_group_id or "")
        self.kubeconfig = pulumi.Output.all(eks.name, eks.endpoint, self.certificate_authority).apply(
            lambda v: kubeconfig(v[0], v[1], v[2], args.region))
        self.k8s_provider = k8s.Provider(f"{name}-k8s", kubeconfig=self.kubeconfig, opts=child(self))

        if spec.admin_role_arn:
            entry = aws.eks.AccessEntry(f"{name}-admin", cluster_name=eks.name, principal_arn=spec.admin_role_arn,
                                        type="STANDARD", tags=tags, opts=child(self))
            aws.eks.AccessPolicyAssociation(
                f"{name}-admin", cluster_name=eks.name, principal_arn=spec.admin_role_arn,
                policy_arn=pulumi.Output.from_input(args.partition).apply(
                    lambda p: CLUSTER_ADMIN_POLICY.format(partition=p)),
                access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                opts=child(self, depends_on=[entry]))

        node_role = aws.iam.Role(f"{name}-nodes", assume_role_policy=assume_role_policy("ec2.amazonaws.com"),
                                 tags=tags, opts=child(self))
        node_policies = [
            aws.iam.RolePolicyAttachment(f"{name}-nodes-{p}", role=node_role.name,
                                         policy_arn=_managed(args.partition, p), opts=child(self))
            for p in ("AmazonEKSWorkerNodePolicy", "AmazonEC2ContainerRegistryPullOnly")
        ]
        self.node_role_arn = node_role.arn
        self.node_role_name = node_role.name

        def pod_role(role: str, policy: str) -> aws.iam.Role:
            r = aws.iam.Role(f"{name}-{role}", assume_role_policy=assume_role_policy(
                "pods.eks.amazonaws.com", tag_session=True), tags=tags, opts=child(self))
            aws.iam.RolePolicyAttachment(f"{name}-{role}", role=r.name, policy_arn=_managed(args.partition, policy),
                                         opts=child(self))
            return r

        cni_role = pod_role("vpc-cni", "AmazonEKS_CNI_Policy")
        ebs_role = pod_role("ebs-csi", "service-role/AmazonEBSCSIDriverPolicy")

        def addon(addon_name: str, *, depends_on: Sequence[pulumi.Resource] = (),
                  identity: tuple[aws.iam.Role, str] | None = None,
                  configuration: Mapping[str, object] | None = None) -> aws.eks.Addon:
            assoc = None
            if identity is not None:
                assoc = [aws.eks.AddonPodIdentityAssociationArgs(role_arn=identity[0].arn,
                                                                 service_account=identity[1])]
            return aws.eks.Addon(
                f"{name}-{addon_name}", cluster_name=eks.name, addon_name=addon_name,
                addon_version=versions[addon_name], resolve_conflicts_on_create="OVERWRITE",
                resolve_conflicts_on_update="PRESERVE", pod_identity_associations=assoc, tags=tags,
                configuration_values=json.dumps(configuration) if configuration else None,
                opts=child(self, depends_on=list(depends_on)))

        self.addons = {}
        self.addons["eks-pod-identity-agent"] = addon("eks-pod-identity-agent")
        self.addons["kube-proxy"] = addon("kube-proxy")
        # The VPC CNI enforces NetworkPolicies only with its network-policy agent switched on; without
        # it the serving namespaces' default-deny policies would be accepted and silently ignored.
        self.addons["vpc-cni"] = addon("vpc-cni", identity=(cni_role, "aws-node"),
                                       depends_on=[self.addons["eks-pod-identity-agent"]],
                                       configuration={"enableNetworkPolicy": "true"})

        lt = node_launch_template(f"{name}-system", parent=self, bottlerocket=spec.node_os is NodeOs.BOTTLEROCKET,
                                  volume_gib=SYSTEM_VOLUME_GIB, tags=with_tags(tags, **{"servekit:pool": "system"}))
        low, desired, high = SYSTEM_NODES
        self.system_node_group = aws.eks.NodeGroup(
            f"{name}-system", cluster_name=eks.name, node_role_arn=node_role.arn, subnet_ids=list(args.subnet_ids),
            ami_type=SYSTEM_AMI[spec.node_os], capacity_type="ON_DEMAND",
            instance_types=[spec.system_instance_type],
            scaling_config=aws.eks.NodeGroupScalingConfigArgs(min_size=low, desired_size=desired, max_size=high),
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
            launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=lt.id, version=lt.latest_version.apply(str)),
            labels=dict(SYSTEM_NODE_SELECTOR),
            tags=with_tags(tags, **{"servekit:pool": "system"}),
            opts=child(self, depends_on=[*node_policies, *self.addons.values()],
                       ignore_changes=["scalingConfig.desiredSize"]))
        self.addons["coredns"] = addon("coredns", depends_on=[self.system_node_group])
        self.addons["aws-ebs-csi-driver"] = addon("aws-ebs-csi-driver", identity=(ebs_role, "ebs-csi-controller-sa"),
                                                  depends_on=[self.system_node_group])

        self.register_outputs({
            "name": self.name,
            "endpoint": self.endpoint,
            "nodeRoleArn": self.node_role_arn,
            "kmsKeyArn": self.kms_key_arn,
        })
