"""components.cluster: endpoint exposure, encryption, logging, IAM, add-ons, system nodes, k8s provider."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_stacks import ADMIN_ROLE, REPO_STACKS, all_plans, one, plan, resources

from components.cluster import ADDON_VERSIONS, CONTROL_PLANE_LOGS
from servekit.spec import SUPPORTED_EKS_VERSIONS, ClusterSpec

EKS = "aws:eks/cluster:Cluster"


def test_endpoint_never_opens_to_the_internet() -> None:
    for p in all_plans():
        vpc = one(p, EKS).inputs["vpcConfig"]
        assert vpc["endpointPrivateAccess"] is True
        cidrs = vpc.get("publicAccessCidrs", [])
        assert "0.0.0.0/0" not in cidrs and "::/0" not in cidrs
        if vpc["endpointPublicAccess"]:
            assert cidrs, f"{p.stack}: a public endpoint needs an allowlist"
        else:
            assert not cidrs


def test_endpoint_exposure_follows_each_stack() -> None:
    assert one(plan("dev"), EKS).inputs["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert one(plan("admin"), EKS).inputs["vpcConfig"]["publicAccessCidrs"] == ["198.51.100.0/24"]
    for stack in ("prod", "regulated"):
        assert one(plan(stack), EKS).inputs["vpcConfig"]["endpointPublicAccess"] is False


def test_the_spec_refuses_an_open_or_missing_allowlist() -> None:
    with pytest.raises(ValueError, match="whole internet"):
        ClusterSpec(endpoint_public=True, public_access_cidrs=["0.0.0.0/0"])
    with pytest.raises(ValueError, match="allowlist"):
        ClusterSpec(endpoint_public=True)


@pytest.mark.parametrize("stack", REPO_STACKS)
def test_secrets_encrypted_with_a_rotating_customer_key_and_logs_kept(stack: str) -> None:
    p = plan(stack)
    eks = one(p, EKS)
    enc = eks.inputs["encryptionConfig"]
    assert enc["resources"] == ["secrets"]
    key = next(k for k in resources(p, "aws:kms/key:Key") if k.name == "servekit-cluster-secrets")
    assert key.inputs["enableKeyRotation"] is True
    assert enc["provider"]["keyArn"] == f"arn:aws:kms:us-east-1:123456789012:key/{key.id}"
    assert eks.inputs["enabledClusterLogTypes"] == ["api", "audit", "authenticator"] == list(CONTROL_PLANE_LOGS)
    group = next(g for g in resources(p, "aws:cloudwatch/logGroup:LogGroup") if g.inputs["name"].startswith("/aws/eks"))
    assert group.inputs["name"] == f"/aws/eks/servekit-{stack}/cluster" == f"/aws/eks/{eks.inputs['name']}/cluster"
    assert group.inputs["kmsKeyId"] == enc["provider"]["keyArn"]
    assert group.urn in eks.dependencies  # exists before EKS would create its own, unencrypted, forever-retained one
    # environment prod (prod, regulated) keeps a year; dev a month; restricted/confidential data a year at least
    assert group.inputs["retentionInDays"] == {"dev": 30, "prod": 365, "regulated": 365}[stack]
    assert eks.inputs["deletionProtection"] is (stack != "dev")
    assert eks.inputs["upgradePolicy"]["supportType"] == "STANDARD"
    assert eks.inputs["accessConfig"]["authenticationMode"] == "API"
    assert eks.inputs["bootstrapSelfManagedAddons"] is False
    assert eks.inputs["kubernetesNetworkConfig"]["serviceIpv4Cidr"] == "172.20.0.0/16"


def test_cluster_role_may_use_its_key() -> None:
    p = plan("prod")
    key = next(k for k in resources(p, "aws:kms/key:Key") if k.name == "servekit-cluster-secrets")
    policy = json.loads(next(r for r in resources(p, "aws:iam/rolePolicy:RolePolicy")
                             if r.name == "servekit-cluster-cluster-kms").inputs["policy"])
    assert policy["Statement"][0]["Resource"].endswith(key.id)
    assert "kms:CreateGrant" in policy["Statement"][0]["Action"]


def test_addons_are_pinned_and_use_pod_identity() -> None:
    assert set(ADDON_VERSIONS) == set(SUPPORTED_EKS_VERSIONS)
    for p in all_plans():
        version = one(p, EKS).inputs["version"]
        addons = {a.inputs["addonName"]: a.inputs for a in resources(p, "aws:eks/addon:Addon")
                  if a.name.startswith("servekit-cluster-")}  # the cluster's own (extensions add theirs)
        assert {n: a["addonVersion"] for n, a in addons.items()} == ADDON_VERSIONS[version]
        assert all(a["addonVersion"].startswith("v") and "eksbuild" in a["addonVersion"] for a in addons.values())
        sa = {n: [x["serviceAccount"] for x in a.get("podIdentityAssociations", [])] for n, a in addons.items()}
        assert sa["vpc-cni"] == ["aws-node"] and sa["aws-ebs-csi-driver"] == ["ebs-csi-controller-sa"]


def test_node_role_has_only_worker_and_ecr_pull_policies() -> None:
    p = plan("prod")
    node_role = next(r for r in resources(p, "aws:iam/role:Role") if r.name == "servekit-cluster-nodes")
    assert json.loads(node_role.inputs["assumeRolePolicy"])["Statement"][0]["Principal"] == {
        "Service": "ec2.amazonaws.com"}
    attached = sorted(a.inputs["policyArn"] for a in resources(p, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
                      if a.name.startswith("servekit-cluster-nodes-"))
    assert attached == ["arn:aws:iam::aws:policy/AmazonEC2ContainerRegistryPullOnly",
                        "arn:aws:iam::aws:policy/AmazonEKSWorkerNodePolicy"]
    cni = next(a for a in resources(p, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")
               if a.name == "servekit-cluster-vpc-cni")
    assert cni.inputs["policyArn"] == "arn:aws:iam::aws:policy/AmazonEKS_CNI_Policy"


def test_admin_access_entry_only_when_configured() -> None:
    assert resources(plan("prod"), "aws:eks/accessEntry:AccessEntry") == []
    p = plan("admin")
    entry = one(p, "aws:eks/accessEntry:AccessEntry")
    assert entry.inputs["principalArn"] == ADMIN_ROLE and entry.inputs["type"] == "STANDARD"
    assoc = one(p, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    assert assoc.inputs["policyArn"] == "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
    assert assoc.inputs["accessScope"] == {"type": "cluster"}


def test_system_node_group() -> None:
    for p in all_plans():
        system = next(g for g in resources(p, "aws:eks/nodeGroup:NodeGroup") if g.name == "servekit-cluster-system")
        i = system.inputs
        assert i["capacityType"] == "ON_DEMAND" and i["instanceTypes"] == ["m7i.large"]
        assert i["labels"] == {"servekit.io/pool": "system"} and "taints" not in i
        assert i["scalingConfig"] == {"minSize": 2, "desiredSize": 2, "maxSize": 3}
        bottlerocket = p.stack in ("regulated", "admin")  # the stacks with nodeOs: bottlerocket
        assert i["amiType"] == ("BOTTLEROCKET_x86_64" if bottlerocket else "AL2023_x86_64_STANDARD")
        addons = {a.inputs["addonName"]: a for a in resources(p, "aws:eks/addon:Addon")}
        assert system.urn in addons["coredns"].dependencies and addons["vpc-cni"].urn in system.dependencies


def test_k8s_provider_kubeconfig_is_built_from_the_cluster_and_holds_no_credential() -> None:
    p = plan("prod")
    provider = one(p, "pulumi:providers:kubernetes")
    kube = json.loads(provider.inputs["kubeconfig"])
    endpoint = p.outputs["clusterEndpoint"]
    assert kube["clusters"][0]["cluster"]["server"] == endpoint and endpoint.startswith("https://")
    user = kube["users"][0]["user"]
    assert set(user) == {"exec"}  # no token, no client key
    assert user["exec"]["command"] == "aws"
    assert user["exec"]["args"] == ["eks", "get-token", "--cluster-name", "servekit-prod", "--region", "us-east-1",
                                    "--output", "json"]
    assert p.outputs["kubeconfig"] == "[secret]"


def test_vpc_cni_enforces_network_policies() -> None:
    # The serving side relies on default-deny NetworkPolicies; the VPC CNI ignores them unless its
    # network-policy agent is enabled through the add-on's configuration.
    for p in all_plans():
        cni = [r for r in resources(p, "aws:eks/addon:Addon") if r.inputs["addonName"] == "vpc-cni"]
        assert len(cni) == 1, p.stack
        assert json.loads(cni[0].inputs["configurationValues"]) == {"enableNetworkPolicy": "true"}
