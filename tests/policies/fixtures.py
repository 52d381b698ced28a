"""Known-good resources, with engine (camelCase) property names, for every resource type the policies read.

``GOOD[stack]`` is a whole compliant stack shaped like the servekit Pulumi program's conventions
(pulumi-aws 7.x classic resources, pulumi-kubernetes 4.x objects, servekit tags and labels). Each
negative test deep-copies one, breaks exactly one thing, and asserts which policy objects.

``evaluate`` plays the engine: it resolves ``policies/config/<stack>.json`` the way the CLI does,
wraps props in pulumi_policy's unknown-checking proxy, runs every resource policy on every
resource and every stack policy once, and returns the violations.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyCustomTimeouts,
    PolicyProviderResource,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError, unknown_checking_proxy

from policies.rules import ALL_POLICIES, load_pack_config, resolve

PROJECT = "servekit"
ACCOUNT = "123456789012"
KEY_ARN = f"arn:aws:kms:us-east-1:{ACCOUNT}:key/0b7f7c2e-7d1a-4a55-9a53-1f0e5f9c2d11"
LICENSES = {"qwen2.5-7b-instruct": "Apache-2.0", "llama-3.1-70b-instruct": "llama3.1",
            "qwen2.5-32b-instruct": "Apache-2.0", "command-r-plus": "CC-BY-NC-4.0"}


@dataclass
class Res:
    """One resource as the engine describes it to a policy."""

    type: str
    props: dict[str, Any]
    deps: dict[str, list[str]] = field(default_factory=dict)  # property -> names of resources it depends on


Stack = dict[str, Res]


def urn(stack: str, r: Res, name: str) -> str:
    return f"urn:pulumi:{stack}::{PROJECT}::{r.type}::{name}"


def options() -> PolicyResourceOptions:
    return PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])


def provider_for(resource_type: str, providers: Mapping[str, dict[str, Any]]) -> PolicyProviderResource | None:
    package = resource_type.split(":")[0]
    props = providers.get(package)
    if props is None:
        return None
    return PolicyProviderResource(f"pulumi:providers:{package}", unknown_checking_proxy(deepcopy(props)),
                                  f"urn:pulumi:s::{PROJECT}::pulumi:providers:{package}::default", "default")


def aws_provider(region: str = "us-east-1", tags: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Default-provider inputs as the engine sends them: object values JSON-encoded."""
    props: dict[str, Any] = {"region": region, "skipCredentialsValidation": "false"}
    if tags is not None:
        props["defaultTags"] = json.dumps({"tags": dict(tags)})
    return props


def resource_args(
    resource_type: str,
    props: Mapping[str, Any],
    config: Mapping[str, Any] | None = None,
    provider: PolicyProviderResource | None = None,
    name: str = "r",
    stack: str = "test",
) -> ResourceValidationArgs:
    """What the engine passes to a resource policy (props behind the unknown-checking proxy)."""
    return ResourceValidationArgs(
        resource_type, unknown_checking_proxy(deepcopy(dict(props))),
        f"urn:pulumi:{stack}::{PROJECT}::{resource_type}::{name}",
        name, options(), provider, dict(config) if config is not None else None,
    )


def policy_resources(
    stack: Stack, providers: Mapping[str, dict[str, Any]], stack_name: str = "test"
) -> list[PolicyResource]:
    """The engine's view of a whole stack: resources with their property dependencies wired up."""
    built = {
        name: PolicyResource(r.type, unknown_checking_proxy(deepcopy(r.props)), urn(stack_name, r, name), name,
                             options(), provider_for(r.type, providers), None, [], {})
        for name, r in stack.items()
    }
    for name, r in stack.items():
        for prop, targets in r.deps.items():
            built[name].property_dependencies[prop] = [built[t] for t in targets]
            built[name].dependencies.extend(built[t] for t in targets)
    return list(built.values())


def stack_args(stack: Stack, providers: Mapping[str, dict[str, Any]] | None = None,
               config: Mapping[str, Any] | None = None) -> StackValidationArgs:
    return StackValidationArgs(policy_resources(stack, providers or {}), dict(config) if config is not None else None)


@dataclass(frozen=True)
class Violation:
    policy: str
    resource: str  # resource name, or "" for the stack
    message: str
    enforcement: EnforcementLevel


def collect(policy: ResourceValidationPolicy | StackValidationPolicy,
            args: ResourceValidationArgs | StackValidationArgs) -> list[tuple[str, str | None]]:
    """(message, urn) pairs one policy reports for one args bag; an UnknownValueError propagates."""
    found: list[tuple[str, str | None]] = []

    def report(message: str, urn: str | None = None) -> None:
        found.append((message, urn))

    if isinstance(policy, ResourceValidationPolicy):
        if not isinstance(args, ResourceValidationArgs):
            raise TypeError(f"{policy.name} is a resource policy")
        policy.validate(args, report)
    else:
        if not isinstance(args, StackValidationArgs):
            raise TypeError(f"{policy.name} is a stack policy")
        policy.validate(args, report)
    return found


def run(policy: ResourceValidationPolicy | StackValidationPolicy,
        args: ResourceValidationArgs | StackValidationArgs) -> list[str]:
    """The messages one policy reports for one args bag."""
    return [message for message, _ in collect(policy, args)]


def evaluate(stack: Stack, config_name: str, providers: Mapping[str, dict[str, Any]] | None = None,
             pack_config: Mapping[str, Any] | None = None) -> list[Violation]:
    """Every violation of every enabled policy, with the stack's policy config resolved like the CLI does.

    Fixtures are fully known, so an UnknownValueError here is a test bug and fails loudly.
    """
    resolved = resolve(ALL_POLICIES, pack_config if pack_config is not None else load_pack_config(config_name))
    providers = providers if providers is not None else PROVIDERS[config_name]
    resources = policy_resources(stack, providers, config_name)
    out: list[Violation] = []
    for policy in ALL_POLICIES:
        r = resolved[policy.name]
        if r.enforcement == EnforcementLevel.DISABLED:
            continue
        if isinstance(policy, StackValidationPolicy):
            for message, at in collect(policy, StackValidationArgs(resources, r.config)):
                out.append(Violation(policy.name, (at or "").rsplit("::", 1)[-1], message, r.enforcement))
            continue
        for res in resources:
            args = ResourceValidationArgs(res.resource_type, res.props, res.urn, res.name, res.opts, res.provider,
                                          r.config)
            try:
                messages = run(policy, args)
            except UnknownValueError as e:
                raise AssertionError(f"{policy.name} met an unknown value in fixture {res.name}: {e.message}") from e
            out.extend(Violation(policy.name, res.name, m, r.enforcement) for m in messages)
    return out


def violated(stack: Stack, config_name: str, **kw: Any) -> set[str]:
    return {v.policy for v in evaluate(stack, config_name, **kw)}


# ------------------------------------------------------------------ the fixtures

def _tags(classification: str, owner: str, cost_center: str) -> dict[str, str]:
    return {"owner": owner, "cost-center": cost_center, "data-classification": classification}


def _tls_only_policy(bucket: str) -> str:
    arn = f"arn:aws:s3:::{bucket}"
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }],
    })


def _network(egress: bool, cidr: str) -> Stack:
    s: Stack = {
        "vpc": Res("aws:ec2/vpc:Vpc", {"cidrBlock": cidr, "enableDnsHostnames": True, "enableDnsSupport": True}),
        "default-sg": Res("aws:ec2/defaultSecurityGroup:DefaultSecurityGroup", {"vpcId": "vpc-0a1b2c"},
                          {"vpcId": ["vpc"]}),
        "nodes-sg": Res("aws:ec2/securityGroup:SecurityGroup", {
            "vpcId": "vpc-0a1b2c", "description": "GPU nodes",
            "ingress": [{"protocol": "tcp", "fromPort": 443.0, "toPort": 443.0, "cidrBlocks": [cidr]}],
            "egress": [{"protocol": "-1", "fromPort": 0.0, "toPort": 0.0, "cidrBlocks": ["0.0.0.0/0"]}],
        }, {"vpcId": ["vpc"]}),
        "vllm-from-vpc": Res("aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule", {
            "securityGroupId": "sg-0abc", "ipProtocol": "tcp", "fromPort": 8000.0, "toPort": 8000.0, "cidrIpv4": cidr,
        }, {"securityGroupId": ["nodes-sg"]}),
    }
    for i, az in enumerate(("us-east-1a", "us-east-1b")):
        s[f"private-{i}"] = Res("aws:ec2/subnet:Subnet", {
            "vpcId": "vpc-0a1b2c", "cidrBlock": cidr.replace(".0.0/16", f".{16 * (i + 1)}.0/20"),
            "availabilityZone": az, "mapPublicIpOnLaunch": False, "tags": {"kubernetes.io/role/internal-elb": "1"},
        }, {"vpcId": ["vpc"]})
    if egress:
        s["public-0"] = Res("aws:ec2/subnet:Subnet", {
            "vpcId": "vpc-0a1b2c", "cidrBlock": cidr.replace(".0.0/16", ".0.0/24"), "availabilityZone": "us-east-1a",
            "mapPublicIpOnLaunch": True, "tags": {"kubernetes.io/role/elb": "1"},
        }, {"vpcId": ["vpc"]})
        s["igw"] = Res("aws:ec2/internetGateway:InternetGateway", {"vpcId": "vpc-0a1b2c"}, {"vpcId": ["vpc"]})
        s["nat"] = Res("aws:ec2/natGateway:NatGateway", {"subnetId": "subnet-0pub", "connectivityType": "public"},
                       {"subnetId": ["public-0"]})
    else:
        for svc, kind in (("s3", "Gateway"), ("ec2", "Interface"), ("ecr.api", "Interface"),
                          ("ecr.dkr", "Interface"), ("sts", "Interface"), ("logs", "Interface")):
            s[f"vpce-{svc}"] = Res("aws:ec2/vpcEndpoint:VpcEndpoint", {
                "vpcId": "vpc-0a1b2c", "serviceName": f"com.amazonaws.us-east-1.{svc}", "vpcEndpointType": kind,
                **({"privateDnsEnabled": True} if kind == "Interface" else {}),
            }, {"vpcId": ["vpc"]})
    return s


def _platform(public_endpoint: bool, cluster: str) -> Stack:
    vpc_config: dict[str, Any] = {"subnetIds": ["subnet-0p0", "subnet-0p1"], "endpointPrivateAccess": True,
                                  "endpointPublicAccess": public_endpoint}
    if public_endpoint:
        vpc_config["publicAccessCidrs"] = ["203.0.113.0/24"]
    return {
        "secrets-key": Res("aws:kms/key:Key", {"description": "EKS secrets, logs, SNS, S3", "enableKeyRotation": True,
                                               "deletionWindowInDays": 30.0}),
        "cluster": Res("aws:eks/cluster:Cluster", {
            "roleArn": f"arn:aws:iam::{ACCOUNT}:role/{cluster}-cluster", "version": "1.34",
            "vpcConfig": vpc_config,
            "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": KEY_ARN}},
            "enabledClusterLogTypes": ["api", "audit", "authenticator", "controllerManager", "scheduler"],
        }, {"vpcConfig": ["private-0", "private-1"], "encryptionConfig": ["secrets-key"]}),
        "control-plane-logs": Res("aws:cloudwatch/logGroup:LogGroup", {
            "name": f"/aws/eks/{cluster}/cluster", "retentionInDays": 365.0, "kmsKeyId": KEY_ARN,
        }, {"kmsKeyId": ["secrets-key"]}),
        "alarms": Res("aws:sns/topic:Topic", {"kmsMasterKeyId": KEY_ARN}, {"kmsMasterKeyId": ["secrets-key"]}),
        "node-template": Res("aws:ec2/launchTemplate:LaunchTemplate", {
            "metadataOptions": {"httpEndpoint": "enabled", "httpTokens": "required", "httpPutResponseHopLimit": 1.0},
            "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {
                "encrypted": "true", "volumeSize": 500.0, "volumeType": "gp3", "kmsKeyId": KEY_ARN}}],
        }),
        "system-nodes": Res("aws:eks/nodeGroup:NodeGroup", {
            "clusterName": cluster, "nodeRoleArn": f"arn:aws:iam::{ACCOUNT}:role/{cluster}-nodes",
            "subnetIds": ["subnet-0p0", "subnet-0p1"], "instanceTypes": ["m7i.large"],
            "scalingConfig": {"minSize": 2.0, "maxSize": 3.0, "desiredSize": 2.0},
            "launchTemplate": {"id": "lt-0abc", "version": "1"},
        }, {"subnetIds": ["private-0", "private-1"], "launchTemplate": ["node-template"]}),
        "model-store": Res("aws:s3/bucket:Bucket", {"bucket": f"{cluster}-model-store", "forceDestroy": False}),
        "model-store-sse": Res(
            "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration",
            {"bucket": f"{cluster}-model-store", "rules": [{"applyServerSideEncryptionByDefault": {
                "sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN}, "bucketKeyEnabled": True}]},
            {"bucket": ["model-store"]}),
        "model-store-pab": Res("aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock", {
            "bucket": f"{cluster}-model-store", "blockPublicAcls": True, "blockPublicPolicy": True,
            "ignorePublicAcls": True, "restrictPublicBuckets": True}, {"bucket": ["model-store"]}),
        "model-store-policy": Res("aws:s3/bucketPolicy:BucketPolicy", {
            "bucket": f"{cluster}-model-store", "policy": _tls_only_policy(f"{cluster}-model-store")},
            {"bucket": ["model-store"]}),
        "model-cache": Res("aws:ebs/volume:Volume", {"availabilityZone": "us-east-1a", "size": 500.0, "type": "gp3",
                                                     "encrypted": True, "kmsKeyId": KEY_ARN}),
    }


def _gpu_nodes(name: str, instance: str, nodes: int, gpu: str, cost: float, purchase: str) -> Res:
    return Res("aws:eks/nodeGroup:NodeGroup", {
        "clusterName": "servekit", "nodeRoleArn": f"arn:aws:iam::{ACCOUNT}:role/servekit-nodes",
        "subnetIds": ["subnet-0p0", "subnet-0p1"], "instanceTypes": [instance],
        "scalingConfig": {"minSize": float(nodes), "maxSize": float(nodes), "desiredSize": float(nodes)},
        "capacityType": "SPOT" if purchase == "spot" else "ON_DEMAND", "amiType": "AL2023_x86_64_NVIDIA",
        "launchTemplate": {"id": "lt-0abc", "version": "1"},
        "labels": {"servekit.io/gpu": gpu, "servekit.io/model": name},
        "taints": [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}],
        "tags": {"servekit:gpu": gpu, "servekit:monthly-cost-usd": f"{cost:.2f}", "servekit:purchase": purchase},
    }, {"subnetIds": ["private-0", "private-1"], "launchTemplate": ["node-template"]})


def _serving(name: str, model: str, classification: str, replicas: int, gpus: int, p95: float) -> Stack:
    labels = {"app.kubernetes.io/name": name, "servekit.io/role": "serving", "servekit.io/model": model}
    pod_labels = {"app.kubernetes.io/name": name}
    annotations = {
        "servekit.io/license": LICENSES[model],
        "servekit.io/commercial-use": "false" if "NC" in LICENSES[model] else "true",
        "servekit.io/data-classification": classification,
        "servekit.io/sla-p95-seconds": f"{p95:g}",
    }
    probe = {"httpGet": {"path": "/health", "port": 8000.0}, "periodSeconds": 10.0}
    container = {
        "name": "vllm",
        "image": "vllm/vllm-openai:v0.11.0",
        "args": ["--model", f"/models/{model}", "--tensor-parallel-size", str(gpus), "--api-key", "$(VLLM_API_KEY)"],
        "ports": [{"containerPort": 8000.0, "name": "http"}],
        "env": [
            {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}},
            {"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "vllm-api-key", "key": "key"}}},
            {"name": "HF_HUB_CACHE", "value": "/models/cache"},
            {"name": "HF_TOKEN_PATH", "value": "/var/run/secrets/hf/token"},
        ],
        "resources": {"requests": {"cpu": "8", "memory": "64Gi", "nvidia.com/gpu": str(gpus)},
                      "limits": {"memory": "96Gi", "nvidia.com/gpu": str(gpus)}},
        "readinessProbe": probe, "livenessProbe": probe,
        "startupProbe": {**probe, "failureThreshold": 90.0},
        "securityContext": {"allowPrivilegeEscalation": False, "runAsNonRoot": True},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}, {"name": "models", "mountPath": "/models"}],
    }
    return {
        f"{name}-ns": Res("kubernetes:core/v1:Namespace", {"apiVersion": "v1", "kind": "Namespace",
                                                          "metadata": {"name": name}}),
        f"{name}-hf-token": Res("kubernetes:core/v1:Secret", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": name},
            "stringData": {"token": "hf_" + "x" * 34}}, {"metadata": [f"{name}-ns"]}),
        f"{name}-deployment": Res("kubernetes:apps/v1:Deployment", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": name, "labels": labels, "annotations": annotations},
            "spec": {
                "replicas": float(replicas),
                "selector": {"matchLabels": pod_labels},
                "template": {
                    "metadata": {"labels": {**pod_labels, "servekit.io/role": "serving"}},
                    "spec": {
                        "containers": [container],
                        "volumes": [{"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": "16Gi"}},
                                    {"name": "models", "persistentVolumeClaim": {"claimName": f"{name}-models"}}],
                        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    },
                },
            },
        }, {"metadata": [f"{name}-ns"]}),
        f"{name}-service": Res("kubernetes:core/v1:Service", {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": name},
            "spec": {"type": "ClusterIP", "selector": pod_labels, "ports": [{"port": 8000.0, "targetPort": "http"}]},
        }, {"metadata": [f"{name}-ns"]}),
        f"{name}-netpol": Res("kubernetes:networking.k8s.io/v1:NetworkPolicy", {
            "apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": f"{name}-ingress", "namespace": name},
            "spec": {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": [{"ports": [{"port": 8000.0}]}]},
        }, {"metadata": [f"{name}-ns"]}),
        f"{name}-pdb": Res("kubernetes:policy/v1:PodDisruptionBudget", {
            "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": name, "namespace": name},
            "spec": {"maxUnavailable": 1.0, "selector": {"matchLabels": pod_labels}},
        }, {"metadata": [f"{name}-ns"]}),
    }


def _sla_gate(namespace: str) -> Res:
    return Res("kubernetes:batch/v1:Job", {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "sla-gate", "namespace": namespace, "labels": {"servekit.io/role": "sla-gate"}},
        "spec": {"backoffLimit": 0.0, "template": {"spec": {"restartPolicy": "Never", "containers": [{
            "name": "locust", "image": "ghcr.io/example/servekit-loadtest:0.1.0",
            "args": ["--p95", "15", "--concurrency", "16"],
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "2Gi"}},
        }]}}},
    }, {"metadata": [f"{namespace}-ns"]})


def build(kind: str) -> Stack:
    """A fresh compliant stack for policies/config/<kind>.json."""
    if kind == "dev":
        s = {**_network(True, "10.40.0.0/16"), **_platform(True, "servekit-dev"),
             "gpu-chat": _gpu_nodes("chat", "g6.xlarge", 1, "l4", 587.50, "on-demand"),
             **_serving("chat", "qwen2.5-7b-instruct", "internal", 1, 1, 10)}
    elif kind == "prod":
        s = {**_network(True, "10.50.0.0/16"), **_platform(False, "servekit-prod"),
             "gpu-contracts": _gpu_nodes("contracts", "p4de.24xlarge", 2, "a100-80gb", 28_000.0, "reserved-1y"),
             "gpu-extract": _gpu_nodes("extract", "p5.4xlarge", 2, "h100", 7_000.0, "reserved-1y"),
             **_serving("contracts", "llama-3.1-70b-instruct", "confidential", 2, 2, 15),
             "sla-gate": _sla_gate("contracts")}
    elif kind == "regulated":
        s = {**_network(False, "10.60.0.0/16"), **_platform(False, "servekit-regulated"),
             "gpu-notes": _gpu_nodes("notes", "p4d.24xlarge", 2, "a100-40gb", 25_000.0, "savings-plan-1y"),
             **_serving("notes", "qwen2.5-32b-instruct", "restricted", 2, 8, 10),
             "sla-gate": _sla_gate("notes")}
    else:
        raise ValueError(kind)
    return s


CLASSIFICATION = {"dev": "internal", "prod": "confidential", "regulated": "restricted"}
PROVIDERS: dict[str, dict[str, dict[str, Any]]] = {
    k: {"aws": aws_provider("us-east-1", _tags(v, "platform-team@example.com", "cc-1234")),
        "kubernetes": {"enableServerSideApply": "true"}}
    for k, v in CLASSIFICATION.items()
}
GOOD: dict[str, Stack] = {k: build(k) for k in ("dev", "prod", "regulated")}


def policy(name: str) -> ResourceValidationPolicy | StackValidationPolicy:
    from policies.rules import POLICIES_BY_NAME

    return POLICIES_BY_NAME[name]


def args_of(kind: str, name: str, stack: Stack | None = None, config: Mapping[str, Any] | None = None,
            providers: Mapping[str, dict[str, Any]] | None = None) -> ResourceValidationArgs:
    """ResourceValidationArgs for one resource of a (possibly mutated) fixture stack."""
    r = (stack if stack is not None else GOOD[kind])[name]
    provider = provider_for(r.type, providers if providers is not None else PROVIDERS[kind])
    return resource_args(r.type, r.props, config, provider, name, kind)
