"""Self-managed Pulumi state for servekit: an S3 bucket and a KMS key for secrets.

Creates, in the account and region it runs against:

- ``state-key``: a customer-managed KMS key (rotation on) that encrypts every object in the bucket
  (SSE-KMS with an S3 Bucket Key), alias ``alias/servekit-pulumi-state``;
- ``secrets-key``: a second KMS key, alias ``alias/servekit-pulumi-secrets``, for Pulumi's
  ``awskms://`` secrets provider, so reading state and decrypting stack secrets are separate grants;
- ``state``: the bucket, ``servekit-pulumi-state-<account>-<region>`` unless ``bucketName`` is set,
  protected from ``pulumi destroy``, with versioning (every state write keeps the previous file),
  bucket-owner-enforced ownership (no ACLs), all four public-access blocks, a lifecycle rule that
  expires non-current versions after ``noncurrentVersionDays`` and aborts stale multipart uploads,
  and a policy that refuses any request not made over TLS 1.2 or newer.

Pulumi's S3 backend needs no lock table (no DynamoDB): it keeps its own lock objects in the bucket.
Use it with ``pulumi login 's3://<bucket>?region=<region>&awssdk=v2'`` and
``pulumi stack init <stack> --secrets-provider 'awskms://alias/servekit-pulumi-secrets?region=<region>'``
(the exported ``loginUrl`` and ``secretsProvider``); see docs/state-backend.md.
"""

from __future__ import annotations

import json

import pulumi
import pulumi_aws as aws

STATE_KEY_ALIAS = "alias/servekit-pulumi-state"
SECRETS_KEY_ALIAS = "alias/servekit-pulumi-secrets"
TAGS = {"servekit:component": "pulumi-state", "managed-by": "pulumi"}


def default_bucket_name(account_id: str, region: str) -> str:
    return f"servekit-pulumi-state-{account_id}-{region}"


def tls_only_policy(bucket_name: str) -> str:
    """Deny every request on the bucket and its objects that is not TLS, or is TLS older than 1.2."""
    resources = [f"arn:aws:s3:::{bucket_name}", f"arn:aws:s3:::{bucket_name}/*"]
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [
            {"Sid": "DenyInsecureTransport", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": resources, "Condition": {"Bool": {"aws:SecureTransport": "false"}}},
            {"Sid": "DenyOutdatedTls", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
             "Resource": resources, "Condition": {"NumericLessThan": {"s3:TlsVersion": "1.2"}}},
        ],
    }, indent=2)


config = pulumi.Config()
identity = aws.get_caller_identity()
region = aws.get_region().region
bucket_name = config.get("bucketName") or default_bucket_name(identity.account_id, region)
noncurrent_days = config.get_int("noncurrentVersionDays") or 90

state_key = aws.kms.Key(
    "state-key", description="servekit Pulumi state bucket encryption", enable_key_rotation=True,
    deletion_window_in_days=30, tags=TAGS, opts=pulumi.ResourceOptions(protect=True))
aws.kms.Alias("state-key-alias", name=STATE_KEY_ALIAS, target_key_id=state_key.key_id)
secrets_key = aws.kms.Key(
    "secrets-key", description="servekit Pulumi secrets provider (awskms://)", enable_key_rotation=True,
    deletion_window_in_days=30, tags=TAGS, opts=pulumi.ResourceOptions(protect=True))
aws.kms.Alias("secrets-key-alias", name=SECRETS_KEY_ALIAS, target_key_id=secrets_key.key_id)

bucket = aws.s3.Bucket(
    "state", bucket=bucket_name, force_destroy=False, tags=TAGS,
    opts=pulumi.ResourceOptions(protect=True))  # losing this bucket loses every stack's state
on_bucket = pulumi.ResourceOptions(parent=bucket)
aws.s3.BucketOwnershipControls(
    "state-ownership", bucket=bucket.id,
    rule=aws.s3.BucketOwnershipControlsRuleArgs(object_ownership="BucketOwnerEnforced"), opts=on_bucket)
public_block = aws.s3.BucketPublicAccessBlock(
    "state-public-access-block", bucket=bucket.id, block_public_acls=True, block_public_policy=True,
    ignore_public_acls=True, restrict_public_buckets=True, opts=on_bucket)
versioning = aws.s3.BucketVersioning(
    "state-versioning", bucket=bucket.id,
    versioning_configuration=aws.s3.BucketVersioningVersioningConfigurationArgs(status="Enabled"), opts=on_bucket)
aws.s3.BucketServerSideEncryptionConfiguration(
    "state-encryption", bucket=bucket.id,
    rules=[aws.s3.BucketServerSideEncryptionConfigurationRuleArgs(
        apply_server_side_encryption_by_default=aws.s3.
        BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultArgs(
            sse_algorithm="aws:kms", kms_master_key_id=state_key.arn),
        bucket_key_enabled=True)],
    opts=on_bucket)
aws.s3.BucketLifecycleConfiguration(
    "state-lifecycle", bucket=bucket.id,
    rules=[aws.s3.BucketLifecycleConfigurationRuleArgs(
        id="expire-noncurrent-and-stale-uploads", status="Enabled",
        filter=aws.s3.BucketLifecycleConfigurationRuleFilterArgs(prefix=""),
        noncurrent_version_expiration=aws.s3.BucketLifecycleConfigurationRuleNoncurrentVersionExpirationArgs(
            noncurrent_days=noncurrent_days),
        abort_incomplete_multipart_upload=aws.s3.BucketLifecycleConfigurationRuleAbortIncompleteMultipartUploadArgs(
            days_after_initiation=7))],
    opts=pulumi.ResourceOptions(parent=bucket, depends_on=[versioning]))
aws.s3.BucketPolicy(
    "state-tls-only", bucket=bucket.id, policy=tls_only_policy(bucket_name),
    # A bucket policy put before the public-access block exists can race it.
    opts=pulumi.ResourceOptions(parent=bucket, depends_on=[public_block]))

pulumi.export("bucketName", bucket.bucket)
pulumi.export("loginUrl", bucket.bucket.apply(lambda b: f"s3://{b}?region={region}&awssdk=v2"))
pulumi.export("secretsProvider", f"awskms://{SECRETS_KEY_ALIAS}?region={region}")
pulumi.export("stateKeyArn", state_key.arn)
pulumi.export("secretsKeyArn", secrets_key.arn)
