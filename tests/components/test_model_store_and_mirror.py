"""ModelStore (bucket hardening) and ImageMirror (pull-through rules, reference rewriting) under mocks."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from vllm_service_harness import ACCOUNT, REGION, Recorded, build_stack, of_type

from components.image_mirror import mirrored_reference, split_image
from components.model_store import bucket_name
from servekit.errors import UserError

ECR = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com"


@pytest.fixture(scope="module")
def regulated() -> list[Recorded]:
    return build_stack("regulated")[0]


def one(resources: list[Recorded], typ: str) -> dict[str, Any]:
    (r,) = of_type(resources, typ)
    return r.inputs


def test_bucket_is_encrypted_versioned_private_and_tls_only(regulated: list[Recorded]) -> None:
    key = one(regulated, "aws:kms/key:Key")
    assert key["enableKeyRotation"] is True
    enc = one(regulated, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")
    (rule,) = enc["rules"]
    assert rule["applyServerSideEncryptionByDefault"]["sseAlgorithm"] == "aws:kms"
    assert rule["applyServerSideEncryptionByDefault"]["kmsMasterKeyId"].startswith(f"arn:aws:kms:{REGION}:{ACCOUNT}:")
    assert one(regulated, "aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"] == {
        "status": "Enabled"}
    block = one(regulated, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert all(block[k] is True for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                          "restrictPublicBuckets"))
    policy = json.loads(str(one(regulated, "aws:s3/bucketPolicy:BucketPolicy")["policy"]))
    insecure = [s for s in policy["Statement"] if s["Condition"].get("Bool", {}).get("aws:SecureTransport") == "false"]
    assert insecure and insecure[0]["Effect"] == "Deny" and insecure[0]["Principal"] == "*"
    assert one(regulated, "aws:s3/bucket:Bucket")["bucket"] == f"servekit-regulated-models-{ACCOUNT}-{REGION}"
    assert one(regulated, "aws:s3/bucket:Bucket")["tags"]["servekit:component"] == "model-store"


def test_no_store_for_stacks_without_s3_models() -> None:
    resources, serving = build_stack("dev")
    assert serving.model_store is None and not of_type(resources, "aws:s3/bucket:Bucket")


@pytest.mark.parametrize(("stack", "ok"), [("prod", True), ("a" * 40, True), ("Team_A", True)])
def test_bucket_names_are_valid_s3_names(stack: str, ok: bool) -> None:
    name = bucket_name(stack, ACCOUNT, "ap-southeast-2")
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", name) is not None
    assert name.endswith(f"-models-{ACCOUNT}-ap-southeast-2") is ok


def test_regulated_mirror_rules_and_credentials(regulated: list[Recorded]) -> None:
    rules = {r.inputs["ecrRepositoryPrefix"]: r.inputs for r in
             of_type(regulated, "aws:ecr/pullThroughCacheRule:PullThroughCacheRule")}
    assert set(rules) >= {"docker-hub", "k8s", "quay", "ecr-public"}
    secrets = {r.inputs["name"] for r in of_type(regulated, "aws:secretsmanager/secret:Secret")}
    assert secrets == {"ecr-pullthroughcache/docker-hub"}  # ghcr only when KEDA (autoscaling) is used
    assert not of_type(regulated, "aws:secretsmanager/secretVersion:SecretVersion")  # no credential in state
    (pol,) = [r for r in of_type(regulated, "aws:iam/rolePolicy:RolePolicy") if r.name.endswith("node-pull-through")]
    doc = json.loads(str(pol.inputs["policy"]))
    assert doc["Statement"][0]["Action"] == ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"]
    assert pol.inputs["role"] == "servekit-nodes"


@pytest.mark.parametrize(("image", "expected"), [
    ("vllm/vllm-openai:v0.33.0", f"{ECR}/docker-hub/vllm/vllm-openai:v0.33.0"),
    ("busybox:1.37", f"{ECR}/docker-hub/library/busybox:1.37"),
    ("docker.io/library/busybox:1.37", f"{ECR}/docker-hub/library/busybox:1.37"),
    ("ghcr.io/kedacore/keda:2.16.1", f"{ECR}/ghcr/kedacore/keda:2.16.1"),
    ("registry.k8s.io/kubectl:v1.34.1", f"{ECR}/k8s/kubectl:v1.34.1"),
    ("quay.io/prometheus/prometheus:v3.5.0", f"{ECR}/quay/prometheus/prometheus:v3.5.0"),
    ("quay.io/a/b@sha256:" + "0" * 64, f"{ECR}/quay/a/b@sha256:" + "0" * 64),
])
def test_mirrored_references(image: str, expected: str) -> None:
    assert mirrored_reference(image, ECR) == expected


@pytest.mark.parametrize(("image", "message"), [
    ("nvcr.io/nvidia/k8s-device-plugin:v0.18.0", "cannot be mirrored"),
    ("vllm/vllm-openai:latest", "latest"),
    ("vllm/vllm-openai", "no tag or digest"),
    ("localhost:5000/x", "no tag or digest"),
])
def test_unmirrorable_or_unpinned_images_are_refused(image: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        mirrored_reference(image, ECR)


def test_split_image_host_rules() -> None:
    assert split_image("localhost:5000/team/app:1") == ("localhost:5000", "team/app", ":1")
    assert split_image("team/app:1") == ("docker.io", "team/app", ":1")
