"""Specs for policies/rules/encryption.py: encryption at rest/in transit, key rotation, audit logs, IMDSv2."""

from __future__ import annotations

import json
from copy import deepcopy

import pytest
from fixtures import GOOD, KEY_ARN, Res, args_of, evaluate, policy, resource_args, run, stack_args, violated
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError


class TestEksSecretsEncryptedCmk:
    name = "eks-secrets-encrypted-cmk"

    def test_no_encryption_config(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["cluster"].props["encryptionConfig"]
        assert violated(s, "prod") == {self.name}

    def test_secrets_not_in_resources(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["cluster"].props["encryptionConfig"]["resources"] = ["configmaps"]
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and '"secrets"' in v.message

    def test_aws_managed_key_is_not_a_customer_key(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["cluster"].props["encryptionConfig"]["provider"]["keyArn"] = (
            "arn:aws:kms:us-east-1:123456789012:alias/aws/eks")
        assert violated(s, "prod") == {self.name}

    def test_key_created_in_the_same_stack_is_unknown_at_preview(self) -> None:
        props = deepcopy(GOOD["prod"]["cluster"].props)
        props["encryptionConfig"]["provider"]["keyArn"] = UNKNOWN_STRING_VALUE
        with pytest.raises(UnknownValueError):
            run(policy(self.name), resource_args("aws:eks/cluster:Cluster", props))

    def test_list_shaped_block_from_older_providers(self) -> None:
        props = deepcopy(GOOD["prod"]["cluster"].props)
        props["encryptionConfig"] = [props["encryptionConfig"]]
        assert run(policy(self.name), resource_args("aws:eks/cluster:Cluster", props)) == []


class TestKmsKeyRotationEnabled:
    name = "kms-key-rotation-enabled"

    @pytest.mark.parametrize("value", [False, None])
    def test_rotation_off_or_unset(self, value: object) -> None:
        s = deepcopy(GOOD["prod"])
        s["secrets-key"].props["enableKeyRotation"] = value
        assert violated(s, "prod") == {self.name}

    def test_rotation_period_too_long(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["secrets-key"].props["rotationPeriodInDays"] = 730.0
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "730" in v.message

    def test_asymmetric_keys_cannot_rotate(self) -> None:
        props = {"customerMasterKeySpec": "RSA_2048", "keyUsage": "SIGN_VERIFY"}
        assert run(policy(self.name), resource_args("aws:kms/key:Key", props)) == []
        assert len(run(policy(self.name), resource_args("aws:kms/key:Key", {}))) == 1


class TestEbsEncrypted:
    name = "ebs-encrypted"

    @pytest.mark.parametrize("value", [False, None])
    def test_volume(self, value: object) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-cache"].props["encrypted"] = value
        assert violated(s, "prod") == {self.name}

    @pytest.mark.parametrize("value", ["false", None])
    def test_launch_template_block_device(self, value: object) -> None:
        s = deepcopy(GOOD["prod"])
        s["node-template"].props["blockDeviceMappings"][0]["ebs"]["encrypted"] = value
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "/dev/xvda" in v.message

    def test_block_device_without_ebs_is_not_judged(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["node-template"].props["blockDeviceMappings"].append({"deviceName": "/dev/sdb", "virtualName": "ephemeral0"})
        assert violated(s, "prod") == set()

    def test_instance_root_device(self) -> None:
        token = "aws:ec2/instance:Instance"
        assert len(run(policy(self.name), resource_args(token, {"instanceType": "m7i.large"}))) == 1
        assert run(policy(self.name), resource_args(token, {"rootBlockDevice": {"encrypted": True}})) == []


class TestS3EncryptedKms:
    name = "s3-encrypted-kms"

    def test_bucket_without_encryption_configuration(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["model-store-sse"]
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "model-store")

    def test_sse_s3_is_not_kms(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-store-sse"].props["rules"][0]["applyServerSideEncryptionByDefault"] = {"sseAlgorithm": "AES256"}
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "model-store-sse") and "AES256" in v.message

    def test_matched_by_bucket_name_without_dependencies(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-store-sse"].deps.clear()  # `bucket` is still the bucket's name
        assert violated(s, "prod") == set()
        s["model-store-sse"].props["bucket"] = "some-other-bucket"
        assert violated(s, "prod") == {self.name}

    def test_inline_legacy_configuration(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["model-store-sse"]
        s["model-store"].props["serverSideEncryptionConfiguration"] = {
            "rule": {"applyServerSideEncryptionByDefault": {"sseAlgorithm": "aws:kms", "kmsMasterKeyId": KEY_ARN}}}
        assert violated(s, "prod") == set()


class TestS3PublicAccessBlocked:
    name = "s3-public-access-blocked"

    def test_no_public_access_block(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["model-store-pab"]
        assert violated(s, "prod") == {self.name}

    @pytest.mark.parametrize("flag", ["blockPublicAcls", "blockPublicPolicy", "ignorePublicAcls",
                                      "restrictPublicBuckets"])
    def test_each_flag(self, flag: str) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-store-pab"].props[flag] = False
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and flag in v.message


class TestS3TlsOnly:
    name = "s3-tls-only"

    def test_no_bucket_policy(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["model-store-policy"]
        assert violated(s, "prod") == {self.name}

    def test_policy_without_secure_transport_deny(self) -> None:
        s = deepcopy(GOOD["prod"])
        doc = json.loads(s["model-store-policy"].props["policy"])
        doc["Statement"][0]["Condition"] = {"StringEquals": {"aws:PrincipalAccount": "123456789012"}}
        s["model-store-policy"].props["policy"] = json.dumps(doc)
        assert violated(s, "prod") == {self.name}

    def test_allow_statement_does_not_count(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-store-policy"].props["policy"] = s["model-store-policy"].props["policy"].replace("Deny", "Allow")
        assert violated(s, "prod") == {self.name}

    def test_policy_given_as_an_object(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-store-policy"].props["policy"] = json.loads(s["model-store-policy"].props["policy"])
        assert violated(s, "prod") == set()

    def test_policy_json_unknown_at_preview(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["model-store-policy"].props["policy"] = UNKNOWN_STRING_VALUE
        with pytest.raises(UnknownValueError):
            run(policy(self.name), stack_args(s))


class TestLogGroupsEncrypted:
    name = "log-groups-encrypted"

    def test_no_kms_key(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["control-plane-logs"].props["kmsKeyId"]
        assert violated(s, "prod") == {self.name}


class TestLogRetentionMinimum:
    name = "log-retention-minimum"

    def test_too_short_for_prod(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["control-plane-logs"].props["retentionInDays"] = 30.0
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "365" in v.message

    def test_same_value_is_enough_for_dev(self) -> None:
        s = deepcopy(GOOD["dev"])
        s["control-plane-logs"].props["retentionInDays"] = 30.0
        assert violated(s, "dev") == set()

    @pytest.mark.parametrize("days", [None, 0.0])
    def test_never_expire_passes(self, days: float | None) -> None:
        props = {"name": "/x", "kmsKeyId": KEY_ARN, "retentionInDays": days}
        assert run(policy(self.name), resource_args("aws:cloudwatch/logGroup:LogGroup", props)) == []


class TestEksControlPlaneAuditLogging:
    name = "eks-control-plane-audit-logging"

    def test_missing_log_types(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["cluster"].props["enabledClusterLogTypes"] = ["api"]
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "audit, authenticator" in v.message

    def test_no_logging_at_all(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["cluster"].props["enabledClusterLogTypes"]
        assert violated(s, "prod") == {self.name}


class TestSnsTopicEncrypted:
    name = "sns-topic-encrypted"

    def test_plain_topic(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["alarms"].props = {}
        assert violated(s, "prod") == {self.name}


class TestImdsv2Required:
    name = "imdsv2-required"

    @pytest.mark.parametrize("tokens", ["optional", None])
    def test_tokens_not_required(self, tokens: str | None) -> None:
        s = deepcopy(GOOD["prod"])
        s["node-template"].props["metadataOptions"]["httpTokens"] = tokens
        assert violated(s, "prod") == {self.name}

    def test_hop_limit(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["node-template"].props["metadataOptions"]["httpPutResponseHopLimit"] = 3.0
        assert violated(s, "prod") == {self.name}

    def test_imds_disabled_passes(self) -> None:
        props = {"metadataOptions": {"httpEndpoint": "disabled"}}
        assert run(policy(self.name), resource_args("aws:ec2/launchTemplate:LaunchTemplate", props)) == []

    def test_node_group_without_launch_template(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["gpu-extract"].props["launchTemplate"]
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "gpu-extract")

    def test_instance(self) -> None:
        args = resource_args("aws:ec2/instance:Instance", {"metadataOptions": {"httpTokens": "optional"}})
        assert len(run(policy(self.name), args)) == 1


def test_unrelated_resources_are_ignored() -> None:
    # A bucket policy is not a log group, key, topic or cluster: the resource policies here stay silent.
    for name in ("eks-secrets-encrypted-cmk", "kms-key-rotation-enabled", "ebs-encrypted", "log-groups-encrypted",
                 "log-retention-minimum", "eks-control-plane-audit-logging", "sns-topic-encrypted", "imdsv2-required"):
        assert run(policy(name), args_of("prod", "model-store-policy")) == []
    assert run(policy("s3-tls-only"), stack_args({"k": Res("aws:kms/key:Key", {})})) == []
