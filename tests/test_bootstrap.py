"""stacks/bootstrap: the self-managed state bucket, run under Pulumi's mocks with ``preview=False``.

The program runs through servekit's offline engine (``servekit.offline.run_program``: recording mocks,
the caller-identity and region invokes answered with AWS's documentation account 123456789012), and
the assertions read the inputs the engine recorded (camelCase, as ``pulumi up`` would send them). The
expected values are the AWS facts the backend needs, written out here: versioning Enabled, SSE with
``aws:kms`` under the program's own key, all four public-access blocks, no ACLs, and a policy that
denies plain HTTP and TLS < 1.2 on the bucket and its objects.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit.offline import FAKE_ACCOUNT_ID, Plan, PlanResource, run_program

ROOT = Path(__file__).resolve().parents[1]
PROGRAM = ROOT / "stacks" / "bootstrap" / "__main__.py"


@pytest.fixture(scope="module")
def plan() -> Plan:
    return run_program({"aws:region": "eu-west-1"}, "bootstrap", program=PROGRAM)


def one(plan: Plan, token: str, name: str | None = None) -> PlanResource:
    found = [r for r in plan.of_type(token) if name is None or r.name == name]
    assert len(found) == 1, f"{token} {name}: {[r.name for r in plan.of_type(token)]}"
    return found[0]


def for_bucket(plan: Plan, token: str) -> dict[str, Any]:
    """Inputs of the one ``token`` resource, checked to target the state bucket and to be its child."""
    bucket = one(plan, "aws:s3/bucket:Bucket")
    res = one(plan, token)
    assert res.inputs["bucket"] == bucket.id
    assert res.parent == bucket.urn
    return res.inputs


def test_bucket_name_is_account_and_region(plan: Plan) -> None:
    bucket = one(plan, "aws:s3/bucket:Bucket")
    assert bucket.inputs["bucket"] == f"servekit-pulumi-state-{FAKE_ACCOUNT_ID}-eu-west-1"
    assert bucket.inputs["forceDestroy"] is False
    assert plan.outputs["loginUrl"] == f"s3://servekit-pulumi-state-{FAKE_ACCOUNT_ID}-eu-west-1?region=eu-west-1&awssdk=v2"
    assert plan.outputs["secretsProvider"] == "awskms://alias/servekit-pulumi-secrets?region=eu-west-1"


def test_versioning_and_history(plan: Plan) -> None:
    assert for_bucket(plan, "aws:s3/bucketVersioning:BucketVersioning")["versioningConfiguration"] == {
        "status": "Enabled"}
    rule = for_bucket(plan, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration")["rules"][0]
    assert rule["status"] == "Enabled"
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 90
    assert rule["abortIncompleteMultipartUpload"]["daysAfterInitiation"] == 7
    assert "expiration" not in rule, "current state files must never expire"


def test_sse_kms_with_the_state_key(plan: Plan) -> None:
    key = one(plan, "aws:kms/key:Key", "state-key")
    assert key.inputs["enableKeyRotation"] is True
    rule = for_bucket(plan, "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration")[
        "rules"][0]
    assert rule["applyServerSideEncryptionByDefault"] == {
        "sseAlgorithm": "aws:kms", "kmsMasterKeyId": f"arn:aws:kms:eu-west-1:{FAKE_ACCOUNT_ID}:key/{key.id}"}
    assert rule["bucketKeyEnabled"] is True


def test_secrets_key_is_separate(plan: Plan) -> None:
    state, secrets = one(plan, "aws:kms/key:Key", "state-key"), one(plan, "aws:kms/key:Key", "secrets-key")
    assert secrets.inputs["enableKeyRotation"] is True
    aliases = {r.inputs["name"]: r.inputs["targetKeyId"] for r in plan.of_type("aws:kms/alias:Alias")}
    assert aliases == {"alias/servekit-pulumi-state": state.id, "alias/servekit-pulumi-secrets": secrets.id}


def test_public_access_blocked_and_no_acls(plan: Plan) -> None:
    block = for_bucket(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert {k: block[k] for k in ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                  "restrictPublicBuckets")} == dict.fromkeys(
        ("blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls", "restrictPublicBuckets"), True)
    ownership = for_bucket(plan, "aws:s3/bucketOwnershipControls:BucketOwnershipControls")
    assert ownership["rule"] == {"objectOwnership": "BucketOwnerEnforced"}


def test_tls_only_policy(plan: Plan) -> None:
    inputs = for_bucket(plan, "aws:s3/bucketPolicy:BucketPolicy")
    name = f"servekit-pulumi-state-{FAKE_ACCOUNT_ID}-eu-west-1"
    statements = json.loads(inputs["policy"])["Statement"]
    assert len(statements) == 2
    for s in statements:
        assert (s["Effect"], s["Principal"], s["Action"]) == ("Deny", "*", "s3:*")
        assert sorted(s["Resource"]) == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
    conditions = [s["Condition"] for s in statements]
    assert {"Bool": {"aws:SecureTransport": "false"}} in conditions
    assert {"NumericLessThan": {"s3:TlsVersion": "1.2"}} in conditions
    block = one(plan, "aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock")
    assert block.urn in one(plan, "aws:s3/bucketPolicy:BucketPolicy").dependencies


def test_config_overrides(plan: Plan) -> None:
    custom = run_program({"aws:region": "us-east-2", "servekit:bucketName": "acme-pulumi-state",
                          "servekit:noncurrentVersionDays": 30}, "bootstrap", program=PROGRAM)
    assert one(custom, "aws:s3/bucket:Bucket").inputs["bucket"] == "acme-pulumi-state"
    rule = one(custom, "aws:s3/bucketLifecycleConfiguration:BucketLifecycleConfiguration").inputs["rules"][0]
    assert rule["noncurrentVersionExpiration"]["noncurrentDays"] == 30
    assert json.loads(one(custom, "aws:s3/bucketPolicy:BucketPolicy").inputs["policy"])["Statement"][0][
        "Resource"][0] == "arn:aws:s3:::acme-pulumi-state"


def test_project_file_declares_the_same_defaults() -> None:
    project = yaml.safe_load((PROGRAM.parent / "Pulumi.yaml").read_text())
    assert project["name"] == "servekit-state"
    assert project["config"]["bucketName"]["default"] == ""
    assert project["config"]["noncurrentVersionDays"]["default"] == 90
    assert project["runtime"]["options"]["virtualenv"] == "../../.venv"
    assert (PROGRAM.parent / project["runtime"]["options"]["virtualenv"] / "bin").resolve() == ROOT / ".venv" / "bin"
