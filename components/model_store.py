"""The kit's S3 model store: where weights live when a model's ``source`` is ``s3``.

Created once per stack (when ``modelStore.enabled`` and at least one model loads from it):

- a customer-managed KMS key (rotation on) and an alias;
- a bucket with SSE-KMS by default (S3 Bucket Key on, so a 140 GB load is not 10^4 KMS calls),
  versioning, all four public-access blocks, bucket-owner-enforced ownership (no ACLs), a lifecycle
  rule that expires non-current versions after 30 days and aborts stale multipart uploads;
- a bucket policy that refuses any request not made over TLS 1.2 or newer;
- a managed IAM policy ``write`` (list, get, put, kms:GenerateDataKey) to attach to whoever fills
  the store (a CI role, an operator). Readers get no store-wide policy: each VllmService gives its
  pod role an inline ``read_policy`` limited to that model's own prefix.

The bucket is named ``servekit-<stack>-models-<account>-<region>`` (:func:`bucket_name`), so
operators and ``servekit model-store fill`` know it before and without the stack's outputs.

Layout inside the bucket, one prefix per checkpoint and revision so two revisions never mix::

    s3://<bucket>/models/<hf org>/<hf repo>/<revision>/{config.json, tokenizer*, *.safetensors}

How weights get there: ``servekit model-store fill`` (docs/model-store.md). How vLLM reads
them: Run:ai Model Streamer, see components/vllm_service.py.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from servekit.sizing import Placement
from servekit.spec import ModelSpec

MODELS_PREFIX = "models"
NONCURRENT_VERSION_DAYS = 30


def bucket_name(stack: str, account_id: str, region: str) -> str:
    """``servekit-<stack>-models-<account>-<region>``: known before deploy, unique per account and region.

    S3 names are global, lowercase, at most 63 characters; a long or odd stack name is replaced by a
    hash of it so the account and region parts always survive.
    """
    slug = re.sub(r"[^a-z0-9-]", "-", stack.lower()).strip("-")
    name = f"servekit-{slug}-models-{account_id}-{region}"
    if len(name) > 63 or not slug:
        name = f"servekit-{hashlib.sha256(stack.encode()).hexdigest()[:8]}-models-{account_id}-{region}"
    return name


def checkpoint_revision(placement: Placement, model: ModelSpec) -> str:
    """The hub revision of the checkpoint a placement serves (pre-quantized repos carry their own)."""
    cp = model.quantizations[placement.quantization]
    return (cp.revision or "main") if cp.repo else model.revision


def store_prefix(placement: Placement, model: ModelSpec) -> str:
    """Key prefix (no leading or trailing slash) of a placement's weights inside the store."""
    return f"{MODELS_PREFIX}/{placement.hf_repo}/{checkpoint_revision(placement, model)}"


@dataclass(frozen=True)
class ModelStoreArgs:
    stack: str
    tags: dict[str, str] = field(default_factory=dict)


class ModelStore(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]
    bucket_arn: pulumi.Output[str]
    kms_key_arn: pulumi.Output[str]
    write_policy_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ModelStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:model_store:ModelStore", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        tags = {**args.tags, "servekit:component": "model-store"}

        key = aws.kms.Key(
            f"{name}-key",
            description=f"servekit {args.stack}: model store encryption",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            tags=tags,
            opts=child,
        )
        aws.kms.Alias(f"{name}-key-alias", name=f"alias/servekit-{args.stack}-models", target_key_id=key.key_id,
                      opts=child)

        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
        bucket = aws.s3.Bucket(
            f"{name}-bucket",
            bucket=pulumi.Output.all(identity.account_id, region.region).apply(
                lambda a: bucket_name(args.stack, a[0], a[1])),
            force_destroy=False,  # weights are expensive to re-upload; deleting the stack keeps them
            tags=tags,
            opts=child,
        )
        bucket_child = pulumi.ResourceOptions(parent=bucket)
        aws.s3.BucketOwnershipControls(
            f"{name}-ownership", bucket=bucket.id,
            rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=bucket_child,
        )
        public_block = aws.s3.BucketPublicAccessBlock(
            f"{name}-public-access-block", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
            ignore_public_acls=True, restrict_public_buckets=True, opts=bucket_child,
        )
        versioning = aws.s3.BucketVersioning(
            f"{name}-versioning", bucket=bucket.id,
            versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=bucket_child,
        )
        aws.s3.BucketServerSideEncryptionConfiguration(
            f"{name}-encryption", bucket=bucket.id,
            rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
                apply_server_side_encryption_by_default=aws.s3.
                BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
                    sse_algorithm="aws:kms", kms_master_key_id=key.arn),
                bucket_key_enabled=True,
            )],
            opts=bucket_child,
        )
        aws.s3.BucketLifecycleConfiguration(
            f"{name}-lifecycle", bucket=bucket.id,
            rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
                id="expire-noncurrent-and-stale-uploads", status="Enabled",
                filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
                noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
                    noncurrent_days=NONCURRENT_VERSION_DAYS),
                abort_incomplete_multipart_upload=aws.s3.
                BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(days_after_initiation=7),
            )],
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]),
        )
        aws.s3.BucketPolicy(
            f"{name}-tls-only", bucket=bucket.id, policy=bucket.arn.apply(tls_only_policy),
            # A bucket policy put before the public-access block exists can race it.
            opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_block]),
        )

        write = aws.iam.Policy(
            f"{name}-write", description=f"servekit {args.stack}: fill the model store",
            policy=pulumi.Output.all(bucket.arn, key.arn).apply(lambda a: write_policy(a[0], a[1])),
            tags=tags, opts=child,
        )

        self.bucket_name = bucket.bucket
        self.bucket_arn = bucket.arn
        self.kms_key_arn = key.arn
        self.write_policy_arn = write.arn
        self.register_outputs({
            "bucketName": self.bucket_name, "bucketArn": self.bucket_arn, "kmsKeyArn": self.kms_key_arn,
            "writePolicyArn": self.write_policy_arn,
        })


def tls_only_policy(bucket_arn: str) -> str:
    """Deny every request over plain HTTP or TLS older than 1.2, for every principal."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "DenyOldTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": resources, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
        ],
    })


def read_policy(bucket_arn: str, key_arn: str, prefixes: list[str]) -> str:
    """List and get under ``prefixes`` only, and decrypt with the store key."""
    pfx = prefixes
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "List", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": bucket_arn,
             "Condition": {"StringLike": {"s3:prefix": [f"{p}*" for p in pfx]}}},
            {"Sid": "Get", "Effect": "Allow", "Action": ["s3:GetObject", "s3:GetObjectVersion"],
             "Resource": [f"{bucket_arn}/{p}*" for p in pfx]},
            {"Sid": "Decrypt", "Effect": "Allow", "Action": ["kms:Decrypt"], "Resource": key_arn},
        ],
    })


def write_policy(bucket_arn: str, key_arn: str) -> str:
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "List", "Effect": "Allow", "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
             "Resource": bucket_arn},
            {"Sid": "ReadWrite", "Effect": "Allow",
             "Action": ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
             "Resource": f"{bucket_arn}/{MODELS_PREFIX}/*"},
            {"Sid": "Encrypt", "Effect": "Allow", "Action": ["kms:Decrypt", "kms:GenerateDataKey"],
             "Resource": key_arn},
        ],
    })
