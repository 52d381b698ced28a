"""What the platform always creates, as plain facts the components build and the cost and preflight
checks count (kept here, outside the Pulumi components, so pure-Python code can read them cheaply)."""

from __future__ import annotations

# Interface endpoints (private DNS) nodes and the kit's add-ons need when there is no internet egress:
# image pulls (ECR API + registry; layers come through the S3 gateway endpoint), credentials (STS, EKS
# Pod Identity's eks-auth), the VPC CNI and EBS CSI (EC2), node bootstrap (EKS), logs and metrics
# (CloudWatch Logs / Monitoring), node access without SSH (SSM, SSM messages, EC2 messages), KMS for
# encrypted volumes and keys, and Auto Scaling for node-group scaling.
INTERFACE_ENDPOINTS = (
    "ecr.api", "ecr.dkr", "sts", "eks", "eks-auth", "ec2", "logs", "monitoring",
    "ssm", "ssmmessages", "ec2messages", "kms", "autoscaling",
)

# System node group (min, desired, max): two for CoreDNS / controller replicas in different AZs.
SYSTEM_NODES = (2, 2, 3)
