"""Metadata for every policy: one table a compliance reviewer can read top to bottom.

``PolicyComplianceFramework`` holds a single framework per policy, so the engine gets the first
mapping of each row; the full list lives here and is what the README and the audit reports show.

Framework references:

* CIS Amazon EKS Benchmark v1.5.0 - section/control numbers (2.1.1 audit logs, 4.2.x pod security,
  4.3.2 network policies, 4.4.x secrets, 5.3.1 KMS secrets encryption, 5.4.x cluster networking).
* CIS Amazon Web Services Foundations Benchmark v3.0.0 - 2.1.1 / 2.1.4 (S3), 2.2.1 (EBS),
  3.6 (KMS rotation), 5.2-5.4 (security groups), 5.6 (IMDSv2).
* AICPA SOC 2 - 2017 Trust Services Criteria (revised points of focus, 2022).
* HIPAA Security Rule - 45 CFR Part 164 Subpart C (164.308 administrative, 164.312 technical safeguards).
* GDPR - Regulation (EU) 2016/679, article numbers.
* ISO/IEC 27001:2022 Annex A and the FinOps Framework where the four above have no fitting control.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyComplianceFramework,
    PolicyConfigSchema,
    ResourceValidation,
    ResourceValidationPolicy,
    Severity,
    StackValidation,
    StackValidationPolicy,
)

from ._config import Schema

CIS_EKS = ("CIS Amazon EKS Benchmark", "1.5.0")
CIS_AWS = ("CIS AWS Foundations Benchmark", "3.0.0")
SOC2 = ("SOC 2", "2017 TSC (2022 points of focus)")
HIPAA = ("HIPAA Security Rule", "45 CFR 164 Subpart C")
GDPR = ("GDPR", "Regulation (EU) 2016/679")
ISO = ("ISO/IEC 27001", "2022")
FINOPS = ("FinOps Framework", "2024")

AnyPolicy = ResourceValidationPolicy | StackValidationPolicy

MANDATORY = EnforcementLevel.MANDATORY
ADVISORY = EnforcementLevel.ADVISORY


@dataclass(frozen=True)
class Control:
    """One framework control a policy helps satisfy."""

    framework: str
    version: str
    reference: str
    title: str

    def as_framework(self) -> PolicyComplianceFramework:
        return PolicyComplianceFramework(
            name=self.framework, version=self.version, reference=self.reference, specification=self.title
        )


def _c(fw: tuple[str, str], reference: str, title: str) -> Control:
    return Control(fw[0], fw[1], reference, title)


@dataclass(frozen=True)
class PolicyMeta:
    name: str
    display_name: str
    concern: str  # the rules/ module it lives in
    description: str
    severity: Severity
    enforcement: EnforcementLevel  # default; a stack's config file may override it
    controls: tuple[Control, ...]
    remediation: str
    url: str

    @property
    def framework(self) -> PolicyComplianceFramework:
        return self.controls[0].as_framework()

    @property
    def tags(self) -> list[str]:
        return [self.concern, *sorted({c.framework for c in self.controls})]


# Shared control rows.
_SOC2_CC61 = _c(SOC2, "CC6.1", "Logical access security over protected information assets (incl. encryption at rest)")
_SOC2_CC66 = _c(SOC2, "CC6.6", "Boundary protection against threats from sources outside the system")
_SOC2_CC67 = _c(SOC2, "CC6.7", "Restricts transmission and movement of information to authorized parties")
_SOC2_CC68 = _c(SOC2, "CC6.8", "Prevents or detects unauthorized or malicious software")
_SOC2_CC72 = _c(SOC2, "CC7.2", "Monitors system components for anomalies")
_SOC2_CC81 = _c(SOC2, "CC8.1", "Changes are authorized, tested and approved before implementation")
_SOC2_A11 = _c(SOC2, "A1.1", "Maintains, monitors and evaluates processing capacity")
_SOC2_C11 = _c(SOC2, "C1.1", "Identifies and maintains confidential information")
_HIPAA_AC = _c(HIPAA, "164.312(a)(1)", "Access control")
_HIPAA_ENC = _c(HIPAA, "164.312(a)(2)(iv)", "Encryption and decryption of ePHI")
_HIPAA_AUDIT = _c(HIPAA, "164.312(b)", "Audit controls")
_HIPAA_TX = _c(HIPAA, "164.312(e)(1)", "Transmission security")
_GDPR_32 = _c(GDPR, "Art. 32(1)(b)", "Ongoing confidentiality, integrity, availability and resilience")
_GDPR_32A = _c(GDPR, "Art. 32(1)(a)", "Encryption of personal data")

_AWS_DOCS = "https://docs.aws.amazon.com"
_K8S_DOCS = "https://kubernetes.io/docs"

_ROWS: tuple[PolicyMeta, ...] = (
    # ------------------------------------------------------------------ isolation
    PolicyMeta(
        "eks-endpoint-private", "EKS API endpoint private or CIDR-limited", "isolation",
        "The EKS API endpoint has private access on and is either private-only or public only to an explicit "
        "allowlist of CIDRs (never 0.0.0.0/0, which is what AWS uses when publicAccessCidrs is omitted).",
        Severity.CRITICAL, MANDATORY,
        (_c(CIS_EKS, "5.4.2", "Ensure clusters are created with Private Endpoint Enabled and Public Access Disabled"),
         _c(CIS_EKS, "5.4.1", "Restrict Access to the Control Plane Endpoint"),
         _SOC2_CC66, _HIPAA_AC, _GDPR_32),
        "Set vpcConfig.endpointPrivateAccess=true. Either set endpointPublicAccess=false (required where "
        "the stack config sets requirePrivateEndpoint), or list your office/VPN egress ranges in "
        "vpcConfig.publicAccessCidrs (servekit: cluster.endpointPublic + cluster.publicAccessCidrs).",
        f"{_AWS_DOCS}/eks/latest/userguide/cluster-endpoint.html",
    ),
    PolicyMeta(
        "eks-nodes-private-subnets", "Worker nodes only in private subnets", "isolation",
        "Every EKS node group is placed only in private subnets: none of its subnets maps public IPs on "
        "launch or carries the kubernetes.io/role/elb (public load balancer) tag.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_EKS, "5.4.3", "Ensure clusters are created with Private Nodes"), _SOC2_CC66, _HIPAA_AC, _GDPR_32),
        "Pass only the private subnets (mapPublicIpOnLaunch=false, routed through NAT or VPC endpoints) "
        "as the node group's subnetIds; keep public subnets for load balancers and NAT gateways only.",
        f"{_AWS_DOCS}/eks/latest/userguide/network-reqs.html",
    ),
    PolicyMeta(
        "no-public-ip-on-nodes", "No public IP on nodes", "isolation",
        "Launch templates and instances never associate a public IP address with a network interface.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_EKS, "5.4.3", "Ensure clusters are created with Private Nodes"), _SOC2_CC66, _HIPAA_AC),
        "Remove associatePublicIpAddress from the launch template's networkInterfaces (or set it to "
        "\"false\"); nodes reach the internet, if at all, through a NAT gateway.",
        f"{_AWS_DOCS}/eks/latest/userguide/launch-templates.html",
    ),
    PolicyMeta(
        "no-world-open-ingress", "No ingress from the whole internet", "isolation",
        "No security group rule admits traffic from 0.0.0.0/0 or ::/0 (except ports the stack config "
        "explicitly allows), and no node group opens SSH to the internet through remoteAccess without "
        "source security groups.",
        Severity.CRITICAL, MANDATORY,
        (_c(CIS_AWS, "5.2",
            "Ensure no security groups allow ingress from 0.0.0.0/0 to remote server administration ports"),
         _c(CIS_AWS, "5.3", "Ensure no security groups allow ingress from ::/0 to remote server administration ports"),
         _SOC2_CC66, _HIPAA_AC, _GDPR_32),
        "Scope ingress to the VPC CIDR, a prefix list or a source security group. For node SSH, prefer "
        "SSM Session Manager; if remoteAccess is needed, set sourceSecurityGroupIds.",
        f"{_AWS_DOCS}/vpc/latest/userguide/vpc-security-groups.html",
    ),
    PolicyMeta(
        "default-security-group-closed", "Default security group restricts all traffic", "isolation",
        "When the program adopts a VPC's default security group, it declares no ingress and no egress rules.",
        Severity.MEDIUM, ADVISORY,
        (_c(CIS_AWS, "5.4", "Ensure the default security group of every VPC restricts all traffic"), _SOC2_CC66),
        "Declare aws.ec2.DefaultSecurityGroup for the VPC with empty ingress and egress lists and attach "
        "purpose-built security groups instead.",
        f"{_AWS_DOCS}/vpc/latest/userguide/default-security-group.html",
    ),
    PolicyMeta(
        "no-egress-gateways", "No internet egress in no-egress stacks", "isolation",
        "In a stack configured with noEgress, no internet gateway, egress-only internet gateway or public "
        "NAT gateway is created (private NAT gateways are allowed).",
        Severity.HIGH, MANDATORY,
        (_SOC2_CC67, _HIPAA_TX, _SOC2_CC66, _GDPR_32),
        "Remove the gateway. Reach AWS services through VPC endpoints (S3 gateway, ECR, STS, EC2 "
        "interface endpoints) and load model weights from the S3 model store (servekit: network.egress none).",
        f"{_AWS_DOCS}/eks/latest/userguide/private-clusters.html",
    ),
    PolicyMeta(
        "vpc-endpoints-for-private-egress", "VPC endpoints present when egress is off", "isolation",
        "A no-egress stack declares VPC endpoints for every AWS service its nodes need (by default ec2, "
        "ecr.api, ecr.dkr, s3 and sts), otherwise nodes cannot join the cluster or pull images.",
        Severity.MEDIUM, ADVISORY,
        (_SOC2_CC67, _HIPAA_TX),
        "Create aws.ec2.VpcEndpoint resources (Gateway for s3, Interface with privateDnsEnabled for the "
        "others) in the cluster VPC, or list the services you really need in the policy config.",
        f"{_AWS_DOCS}/eks/latest/userguide/private-clusters.html",
    ),
    # ------------------------------------------------------------------ encryption and audit
    PolicyMeta(
        "eks-secrets-encrypted-cmk", "EKS secrets encrypted with a customer KMS key", "encryption",
        "The EKS cluster envelope-encrypts Kubernetes secrets with a customer-managed KMS key "
        "(encryptionConfig.resources contains \"secrets\" and provider.keyArn is not an AWS-managed alias).",
        Severity.HIGH, MANDATORY,
        (_c(CIS_EKS, "5.3.1",
            "Ensure Kubernetes Secrets are encrypted using Customer Master Keys (CMKs) managed in AWS KMS"),
         _HIPAA_ENC, _SOC2_CC61, _GDPR_32A),
        "Create an aws.kms.Key with enableKeyRotation=true and set the cluster's encryptionConfig to "
        "{resources: [\"secrets\"], provider: {keyArn: key.arn}}.",
        f"{_AWS_DOCS}/eks/latest/userguide/enable-kms.html",
    ),
    PolicyMeta(
        "kms-key-rotation-enabled", "KMS keys rotate", "encryption",
        "Every symmetric customer-managed KMS key has automatic rotation enabled, at most every "
        "maxRotationPeriodDays days.",
        Severity.MEDIUM, MANDATORY,
        (_c(CIS_AWS, "3.6", "Ensure rotation for customer-created symmetric CMKs is enabled"),
         _HIPAA_ENC, _SOC2_CC61, _GDPR_32A),
        "Set enableKeyRotation=true on the aws.kms.Key (rotationPeriodInDays between 90 and the configured maximum).",
        f"{_AWS_DOCS}/kms/latest/developerguide/rotate-keys.html",
    ),
    PolicyMeta(
        "ebs-encrypted", "EBS volumes encrypted", "encryption",
        "EBS volumes, launch-template block devices and instance root/EBS devices are encrypted.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_AWS, "2.2.1", "Ensure EBS volume encryption is enabled in all regions"),
         _HIPAA_ENC, _SOC2_CC61, _GDPR_32A),
        "Set encrypted=true on aws.ebs.Volume, and ebs.encrypted=\"true\" (optionally ebs.kmsKeyId) on every "
        "launch-template blockDeviceMappings entry that defines an EBS volume.",
        f"{_AWS_DOCS}/ebs/latest/userguide/ebs-encryption.html",
    ),
    PolicyMeta(
        "s3-encrypted-kms", "S3 buckets encrypted with KMS", "encryption",
        "Every S3 bucket has a server-side encryption configuration using aws:kms or aws:kms:dsse "
        "(SSE-S3 default encryption does not give key-level access control or CloudTrail key audit).",
        Severity.HIGH, MANDATORY,
        (_HIPAA_ENC, _SOC2_CC61, _GDPR_32A),
        "Add aws.s3.BucketServerSideEncryptionConfiguration for the bucket with "
        "applyServerSideEncryptionByDefault {sseAlgorithm: \"aws:kms\", kmsMasterKeyId: key.arn} and bucketKeyEnabled.",
        f"{_AWS_DOCS}/AmazonS3/latest/userguide/UsingKMSEncryption.html",
    ),
    PolicyMeta(
        "s3-public-access-blocked", "S3 public access blocked", "encryption",
        "Every S3 bucket has a public access block with all four settings on (blockPublicAcls, "
        "blockPublicPolicy, ignorePublicAcls, restrictPublicBuckets).",
        Severity.CRITICAL, MANDATORY,
        (_c(CIS_AWS, "2.1.4", "Ensure that S3 Buckets are configured with 'Block public access (bucket settings)'"),
         _SOC2_CC66, _HIPAA_AC, _GDPR_32),
        "Add aws.s3.BucketPublicAccessBlock for the bucket with all four flags set to true.",
        f"{_AWS_DOCS}/AmazonS3/latest/userguide/access-control-block-public-access.html",
    ),
    PolicyMeta(
        "s3-tls-only", "S3 buckets refuse plain HTTP", "encryption",
        "Every S3 bucket has a bucket policy that denies all requests when aws:SecureTransport is false.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_AWS, "2.1.1", "Ensure S3 Bucket Policy is set to deny HTTP requests"),
         _c(HIPAA, "164.312(e)(2)(ii)", "Encryption of ePHI in transmission"), _SOC2_CC67, _GDPR_32A),
        "Add aws.s3.BucketPolicy with a statement {Effect: Deny, Principal: \"*\", Action: \"s3:*\", "
        "Resource: [bucket ARN, bucket ARN/*], Condition: {Bool: {\"aws:SecureTransport\": \"false\"}}}.",
        f"{_AWS_DOCS}/AmazonS3/latest/userguide/security-best-practices.html",
    ),
    PolicyMeta(
        "log-groups-encrypted", "CloudWatch log groups encrypted with KMS", "encryption",
        "Every CloudWatch log group (control-plane logs, vLLM logs, flow logs) is encrypted with a KMS key.",
        Severity.MEDIUM, MANDATORY,
        (_HIPAA_ENC, _HIPAA_AUDIT, _SOC2_CC61, _GDPR_32A),
        "Set kmsKeyId on the aws.cloudwatch.LogGroup; the key policy must allow the logs.<region>.amazonaws.com "
        "principal. Pre-create /aws/eks/<cluster>/cluster so the EKS control-plane logs land in it.",
        f"{_AWS_DOCS}/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html",
    ),
    PolicyMeta(
        "log-retention-minimum", "Log retention long enough for audits", "encryption",
        "Every CloudWatch log group keeps its events at least minLogRetentionDays days (unset retention "
        "means never expire, which passes).",
        Severity.MEDIUM, MANDATORY,
        (_HIPAA_AUDIT, _c(HIPAA, "164.308(a)(1)(ii)(D)", "Information system activity review"),
         _c(SOC2, "CC7.3", "Evaluates security events to determine whether they are incidents")),
        "Set retentionInDays on the aws.cloudwatch.LogGroup to a CloudWatch-supported value at or above "
        "the stack's minimum (e.g. 365).",
        f"{_AWS_DOCS}/AmazonCloudWatch/latest/logs/Working-with-log-groups-and-streams.html",
    ),
    PolicyMeta(
        "eks-control-plane-audit-logging", "EKS control-plane audit logging on", "encryption",
        "The EKS cluster ships at least the api, audit and authenticator control-plane logs to CloudWatch.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_EKS, "2.1.1", "Enable audit Logs"), _HIPAA_AUDIT, _SOC2_CC72),
        "Set enabledClusterLogTypes on the aws.eks.Cluster to include api, audit and authenticator "
        "(all five types for full CIS coverage).",
        f"{_AWS_DOCS}/eks/latest/userguide/control-plane-logs.html",
    ),
    PolicyMeta(
        "sns-topic-encrypted", "SNS topics encrypted", "encryption",
        "Every SNS topic (alarm notifications) uses server-side encryption with a KMS key.",
        Severity.MEDIUM, MANDATORY,
        (_HIPAA_ENC, _SOC2_CC61, _GDPR_32A),
        "Set kmsMasterKeyId on the aws.sns.Topic (a customer key whose policy lets CloudWatch publish).",
        f"{_AWS_DOCS}/sns/latest/dg/sns-server-side-encryption.html",
    ),
    PolicyMeta(
        "imdsv2-required", "IMDSv2 required on nodes", "encryption",
        "Launch templates and instances require IMDSv2 session tokens (httpTokens=required) with a hop "
        "limit of at most maxHopLimit, and every EKS node group uses a launch template so this is explicit.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_AWS, "5.6", "Ensure that EC2 Metadata Service only allows IMDSv2"), _SOC2_CC66, _HIPAA_AC),
        "Set metadataOptions {httpEndpoint: \"enabled\", httpTokens: \"required\", httpPutResponseHopLimit: 1} "
        "on the node launch template (2 only if a pod must reach IMDS) and pass launchTemplate to the node group.",
        f"{_AWS_DOCS}/AWSEC2/latest/UserGuide/configuring-instance-metadata-service.html",
    ),
    # ------------------------------------------------------------------ kubernetes workloads
    PolicyMeta(
        "k8s-image-pinned", "Container images pinned", "kubernetes",
        "Every container and init container image names an immutable version: a tag that is not latest "
        "or another moving tag, or a sha256 digest (a digest is required where requireDigest is set).",
        Severity.HIGH, MANDATORY,
        (_SOC2_CC81, _SOC2_CC68, _c(HIPAA, "164.308(a)(5)(ii)(B)", "Protection from malicious software")),
        "Reference images as repo:version or repo@sha256:<digest> (e.g. vllm/vllm-openai:v0.11.0); pin the "
        "digest in prod. Never use :latest or an untagged image.",
        f"{_K8S_DOCS}/concepts/containers/images/",
    ),
    PolicyMeta(
        "k8s-resources-set", "CPU/memory requests and limits set", "kubernetes",
        "Every container declares cpu and memory requests and a memory limit (cpu limit where "
        "requireCpuLimit is set), and GPU requests equal GPU limits.",
        Severity.MEDIUM, MANDATORY,
        (_SOC2_A11, _GDPR_32),
        "Set resources.requests {cpu, memory} and resources.limits {memory, nvidia.com/gpu} on every "
        "container; vLLM pods also need nvidia.com/gpu equal to the tensor-parallel size.",
        f"{_K8S_DOCS}/concepts/configuration/manage-resources-containers/",
    ),
    PolicyMeta(
        "k8s-no-privileged-host-access", "No privileged or host-level pods", "kubernetes",
        "Workloads outside the exempt namespaces run no privileged container, do not allow privilege "
        "escalation, and use neither hostNetwork, hostPID, hostIPC nor hostPath volumes.",
        Severity.CRITICAL, MANDATORY,
        (_c(CIS_EKS, "4.2.1", "Minimize the admission of privileged containers"),
         _c(CIS_EKS, "4.2.4", "Minimize the admission of containers wishing to share the host network namespace"),
         _c(CIS_EKS, "4.2.5", "Minimize the admission of containers with allowPrivilegeEscalation"),
         _SOC2_CC61, _HIPAA_AC, _GDPR_32),
        "Drop privileged/hostNetwork/hostPID/hostIPC, set allowPrivilegeEscalation=false, and replace hostPath "
        "with emptyDir (medium: Memory for /dev/shm) or a PersistentVolumeClaim for the model cache.",
        f"{_K8S_DOCS}/concepts/security/pod-security-standards/",
    ),
    PolicyMeta(
        "k8s-serving-probes", "Probes on serving containers", "kubernetes",
        "Every container of a model-serving workload has readiness and liveness probes, and a startup "
        "probe so slow model loads are not killed by the liveness probe.",
        Severity.HIGH, MANDATORY,
        (_SOC2_CC72, _GDPR_32),
        "Add readinessProbe and livenessProbe (HTTP GET /health on the vLLM port) and a startupProbe whose "
        "failureThreshold x periodSeconds covers the model load time.",
        f"{_K8S_DOCS}/tasks/configure-pod-container/configure-liveness-readiness-startup-probes/",
    ),
    PolicyMeta(
        "k8s-no-inline-secrets", "Secrets referenced, never inlined", "kubernetes",
        "No container env value, argument or ConfigMap holds a credential literal (Hugging Face, OpenAI-style, "
        "AWS, GitHub tokens, private keys, or any value of a *TOKEN/*SECRET/*PASSWORD/*API_KEY variable); "
        "credentials come from Secrets via secretKeyRef or mounted files.",
        Severity.CRITICAL, MANDATORY,
        (_c(CIS_EKS, "4.4.1", "Prefer using secrets as files over secrets as environment variables"),
         _c(CIS_EKS, "4.4.2", "Consider external secret storage"),
         _SOC2_CC61, _c(HIPAA, "164.312(d)", "Person or entity authentication"), _GDPR_32),
        "Put the token in a kubernetes Secret (from a Pulumi secret) and reference it with "
        "env[].valueFrom.secretKeyRef; pass vLLM's API key as --api-key $(VLLM_API_KEY) from such an env var.",
        f"{_K8S_DOCS}/concepts/configuration/secret/",
    ),
    PolicyMeta(
        "k8s-networkpolicy-per-namespace", "NetworkPolicy in every serving namespace", "kubernetes",
        "Every namespace that runs a model-serving workload has at least one NetworkPolicy governing ingress.",
        Severity.HIGH, MANDATORY,
        (_c(CIS_EKS, "4.3.2", "Ensure that all Namespaces have Network Policies defined"),
         _SOC2_CC66, _HIPAA_AC, _GDPR_32),
        "Add a NetworkPolicy in the namespace (default-deny ingress plus allow rules from the gateway/SLA "
        "gate namespaces on the vLLM port); enable network policy support in the VPC CNI.",
        f"{_K8S_DOCS}/concepts/services-networking/network-policies/",
    ),
    PolicyMeta(
        "k8s-pdb-for-multi-replica", "PodDisruptionBudget for multi-replica serving", "kubernetes",
        "Every Deployment with two or more replicas has a PodDisruptionBudget in its namespace whose "
        "selector matches its pods and that still allows one voluntary eviction.",
        Severity.MEDIUM, ADVISORY,
        (_c(SOC2, "CC9.1", "Identifies and mitigates risks from business disruptions"),
         _c(HIPAA, "164.308(a)(7)(i)", "Contingency plan"), _GDPR_32),
        "Add a policy/v1 PodDisruptionBudget with selector.matchLabels equal to the Deployment's pod labels "
        "and maxUnavailable: 1 (or minAvailable below the replica count).",
        f"{_K8S_DOCS}/tasks/run-application/configure-pdb/",
    ),
    # ------------------------------------------------------------------ LLM-specific
    PolicyMeta(
        "model-license-allowed", "Model licence on the stack's allowlist", "licensing",
        "Every model-serving workload declares its model licence (servekit.io/license), the licence is on "
        "the stack's allowlist, and where commercialOnly is set the model allows commercial use.",
        Severity.HIGH, MANDATORY,
        (_c(ISO, "A.5.32", "Intellectual property rights"),
         _c(SOC2, "CC9.2", "Assesses and manages risks associated with vendors and business partners")),
        "Serve a model whose licence the stack allows (see models/<id>.yaml license), or have legal approve "
        "the licence and add its id to allowedLicenses in policies/config/<stack>.json.",
        "https://spdx.org/licenses/",
    ),
    PolicyMeta(
        "serving-workload-labels", "Serving workloads carry their compliance facts", "licensing",
        "Every model-serving workload carries servekit.io/model, servekit.io/license, "
        "servekit.io/commercial-use (true or false), servekit.io/data-classification (an allowed class) and "
        "servekit.io/sla-p95-seconds (a positive number).",
        Severity.MEDIUM, MANDATORY,
        (_c(ISO, "A.5.13", "Labelling of information"), _SOC2_C11,
         _c(GDPR, "Art. 30", "Records of processing activities")),
        "Let the servekit VllmService component set these labels from the model catalog and stack file; "
        "do not hand-edit them.",
        f"{_K8S_DOCS}/concepts/overview/working-with-objects/common-labels/",
    ),
    PolicyMeta(
        "gpu-instance-type-allowed", "GPU instance types on the allowlist", "gpu",
        "Every GPU node group (or GPU launch template) uses only instance types on the stack's allowlist, "
        "and lists them explicitly.",
        Severity.HIGH, MANDATORY,
        (_SOC2_A11, _SOC2_CC81),
        "Pick an allowed instance type (servekit size MODEL --gpu ...), or get the new type approved and "
        "add it to allowedInstanceTypes in policies/config/<stack>.json.",
        f"{_AWS_DOCS}/ec2/latest/instancetypes/ac.html",
    ),
    PolicyMeta(
        "gpu-count-ceiling", "GPU count ceiling per node group", "gpu",
        "A GPU node group can never scale past maxGpusPerNodeGroup GPUs (GPUs per instance x scalingConfig.maxSize).",
        Severity.HIGH, MANDATORY,
        (_SOC2_A11, _c(FINOPS, "Budgeting", "Cost guardrails on provisioned capacity")),
        "Lower scalingConfig.maxSize or use a smaller instance type; raise maxGpusPerNodeGroup in the stack's "
        "policy config only with the budget owner's approval.",
        f"{_AWS_DOCS}/ec2/latest/instancetypes/ac.html",
    ),
    PolicyMeta(
        "gpu-nodegroup-cost-tags", "GPU node groups carry cost facts", "gpu",
        "Every GPU node group carries servekit:gpu, servekit:monthly-cost-usd (a number) and "
        "servekit:purchase (a known option), and the purchase option matches the node group's capacityType.",
        Severity.MEDIUM, MANDATORY,
        (_SOC2_A11, _c(ISO, "A.5.9", "Inventory of information and other associated assets"),
         _c(FINOPS, "Allocation", "Cost allocation through tagging")),
        "Let the servekit GpuNodes component tag node groups from the Placement; spot needs capacityType "
        "SPOT, capacity-block needs CAPACITY_BLOCK, everything else ON_DEMAND.",
        f"{_AWS_DOCS}/eks/latest/userguide/managed-node-groups.html",
    ),
    PolicyMeta(
        "region-allowed", "Resources only in allowed regions", "residency",
        "Every regional AWS resource is created in a region on the stack's allowedRegions list (the "
        "resource's region input, else its provider's region; an unpinned region is refused).",
        Severity.HIGH, MANDATORY,
        (_c(GDPR, "Art. 44", "General principle for transfers"),
         _c(ISO, "A.5.34", "Privacy and protection of personal identifiable information"), _SOC2_CC67),
        "Set aws:region in stacks/Pulumi.<stack>.yaml to an allowed region, and do not override region on "
        "individual resources; changing the allowlist needs the data-protection officer's approval.",
        "https://gdpr-info.eu/art-44-gdpr/",
    ),
    PolicyMeta(
        "required-tags", "Ownership and classification tags", "tagging",
        "Every taggable AWS resource carries non-empty owner, cost-center and data-classification tags "
        "(directly or through the provider's defaultTags), with an allowed classification.",
        Severity.MEDIUM, MANDATORY,
        (_c(ISO, "A.5.9", "Inventory of information and other associated assets"), _SOC2_C11,
         _c(HIPAA, "164.308(a)(1)(ii)(A)", "Risk analysis (knowing where ePHI resides)"),
         _c(GDPR, "Art. 30", "Records of processing activities")),
        "Set servekit:tags (owner, costCenter, dataClassification) in the stack file; the kit applies them "
        "as provider defaultTags.",
        "https://docs.aws.amazon.com/whitepapers/latest/tagging-best-practices/tagging-best-practices.html",
    ),
    PolicyMeta(
        "sla-gate-required", "SLA gate on production stacks", "sla",
        "A stack that must gate on its SLA (prod by default) and serves models also runs an SLA gate: a "
        "Job or CronJob labelled servekit.io/role=sla-gate.",
        Severity.HIGH, MANDATORY,
        (_SOC2_CC81, _c(GDPR, "Art. 32(1)(d)", "Regularly testing and evaluating the effectiveness of measures")),
        "Set servekit:slaGate: true in the stack file (the SlaGate component creates the Job), or run "
        "servekit loadtest in the deploy pipeline and mark the policy advisory for that stack.",
        f"{_K8S_DOCS}/concepts/workloads/controllers/job/",
    ),
    PolicyMeta(
        "monthly-budget", "Estimated monthly cost within budget", "budget",
        "The sum of servekit:monthly-cost-usd over the stack's EKS node groups is at most budgetMonthlyUsd, "
        "and no GPU node group lacks a cost estimate (copies of the tag on launch templates are not counted).",
        Severity.HIGH, MANDATORY,
        (_c(FINOPS, "Budgeting", "Budgets set and enforced before spend"), _SOC2_A11),
        "Run servekit cost --stack S, then reduce replicas, quantize, choose a cheaper GPU or purchase "
        "option, or get the budget raised in policies/config/<stack>.json.",
        f"{_AWS_DOCS}/cost-management/latest/userguide/budgets-managing-costs.html",
    ),
)

META: Mapping[str, PolicyMeta] = {row.name: row for row in _ROWS}


def _schema(config: Schema | None) -> PolicyConfigSchema | None:
    return PolicyConfigSchema(properties={k: dict(v) for k, v in config.items()}) if config else None


def _policy_kwargs(name: str, validate: Any, config: Schema | None) -> dict[str, Any]:
    """The constructor arguments every policy takes, from its metadata row (resource and stack alike)."""
    m = META[name]
    return {
        "name": m.name, "description": m.description, "validate": validate, "enforcement_level": m.enforcement,
        "config_schema": _schema(config), "display_name": m.display_name, "severity": m.severity,
        "framework": m.framework, "tags": m.tags, "remediation_steps": m.remediation, "url": m.url,
    }


def resource_policy(
    name: str, validate: ResourceValidation, config: Schema | None = None
) -> ResourceValidationPolicy:
    """Build the resource policy ``name`` from its metadata row."""
    return ResourceValidationPolicy(**_policy_kwargs(name, validate, config))


def stack_policy(name: str, validate: StackValidation, config: Schema | None = None) -> StackValidationPolicy:
    """Build the stack policy ``name`` from its metadata row."""
    return StackValidationPolicy(**_policy_kwargs(name, validate, config))
