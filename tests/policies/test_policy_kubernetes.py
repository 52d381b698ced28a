"""Specs for policies/rules/kubernetes.py: images, resources, host access, probes, secrets, NetworkPolicy, PDB."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import pytest
from fixtures import GOOD, Res, Stack, evaluate, policy, resource_args, run, stack_args, violated
from pulumi_policy import EnforcementLevel, Secret
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

from policies.rules.kubernetes import selector_matches, split_image, token_kind

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def vllm(s: Stack, name: str = "contracts") -> dict[str, Any]:
    """The vLLM container of the fixture's serving Deployment."""
    container: dict[str, Any] = s[f"{name}-deployment"].props["spec"]["template"]["spec"]["containers"][0]
    return container


def pod_spec(s: Stack, name: str = "contracts") -> dict[str, Any]:
    spec: dict[str, Any] = s[f"{name}-deployment"].props["spec"]["template"]["spec"]
    return spec


class TestImagePinned:
    name = "k8s-image-pinned"

    @pytest.mark.parametrize("image", ["vllm/vllm-openai:latest", "vllm/vllm-openai", "vllm/vllm-openai:nightly",
                                       "registry.example.com:5000/vllm/vllm-openai"])
    def test_moving_or_missing_tag(self, image: str) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["image"] = image
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "contracts-deployment")

    @pytest.mark.parametrize("image", ["registry.example.com:5000/vllm/vllm-openai:v0.11.0",
                                       "vllm/vllm-openai@sha256:" + "a" * 64,
                                       "vllm/vllm-openai:latest@sha256:" + "b" * 64])
    def test_pinned(self, image: str) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["image"] = image
        assert violated(s, "prod") == set()

    def test_digest_required_by_config(self) -> None:
        props = GOOD["prod"]["contracts-deployment"].props
        assert len(run(policy(self.name), resource_args(DEPLOYMENT, props, {"requireDigest": True}))) == 1

    def test_init_container_and_job(self) -> None:
        s = deepcopy(GOOD["prod"])
        pod_spec(s)["initContainers"] = [{"name": "fetch", "image": "amazon/aws-cli",
                                          "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                                        "limits": {"memory": "1Gi"}}}]
        s["sla-gate"].props["spec"]["template"]["spec"]["containers"][0]["image"] = "locustio/locust:latest"
        assert {(v.policy, v.resource) for v in evaluate(s, "prod")} == {
            (self.name, "contracts-deployment"), (self.name, "sla-gate")}

    def test_cron_job_pod_template_is_found(self) -> None:
        props = {"spec": {"schedule": "0 * * * *", "jobTemplate": {"spec": {"template": {"spec": {
            "containers": [{"name": "c", "image": "busybox"}]}}}}}}
        assert len(run(policy(self.name), resource_args("kubernetes:batch/v1:CronJob", props))) == 1

    def test_unknown_image_defers(self) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["image"] = UNKNOWN_STRING_VALUE
        with pytest.raises(UnknownValueError):
            run(policy(self.name), resource_args(DEPLOYMENT, s["contracts-deployment"].props))

    @pytest.mark.parametrize(("image", "expected"), [
        ("vllm/vllm-openai:v0.11.0", ("vllm/vllm-openai", "v0.11.0", None)),
        ("localhost:5000/x", ("localhost:5000/x", None, None)),
        ("x@sha256:abc", ("x", None, "sha256:abc")),
    ])
    def test_split_image(self, image: str, expected: tuple[str, str | None, str | None]) -> None:
        assert split_image(image) == expected


class TestResourcesSet:
    name = "k8s-resources-set"

    def test_no_limits(self) -> None:
        s = deepcopy(GOOD["prod"])
        del vllm(s)["resources"]["limits"]
        found = evaluate(s, "prod")
        assert {v.policy for v in found} == {self.name}
        assert any("limits.memory" in v.message for v in found)
        assert any("nvidia.com/gpu" in v.message for v in found)  # a GPU request needs the same limit

    def test_no_cpu_request(self) -> None:
        s = deepcopy(GOOD["prod"])
        del vllm(s)["resources"]["requests"]["cpu"]
        assert violated(s, "prod") == {self.name}

    def test_gpu_limit_must_equal_request(self) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["resources"]["limits"]["nvidia.com/gpu"] = "1"
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "nvidia.com/gpu" in v.message

    def test_cpu_limit_only_when_configured(self) -> None:
        props = GOOD["prod"]["contracts-deployment"].props
        assert run(policy(self.name), resource_args(DEPLOYMENT, props)) == []
        assert len(run(policy(self.name), resource_args(DEPLOYMENT, props, {"requireCpuLimit": True}))) == 1


class TestNoPrivilegedHostAccess:
    name = "k8s-no-privileged-host-access"

    @pytest.mark.parametrize("field", ["hostNetwork", "hostPID", "hostIPC"])
    def test_host_namespaces(self, field: str) -> None:
        s = deepcopy(GOOD["prod"])
        pod_spec(s)[field] = True
        assert violated(s, "prod") == {self.name}

    def test_host_path(self) -> None:
        s = deepcopy(GOOD["prod"])
        pod_spec(s)["volumes"].append({"name": "cache", "hostPath": {"path": "/mnt/models"}})
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "hostPath" in v.message

    @pytest.mark.parametrize("field", ["privileged", "allowPrivilegeEscalation"])
    def test_security_context(self, field: str) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["securityContext"][field] = True
        assert violated(s, "prod") == {self.name}

    def test_capabilities_beyond_baseline(self) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["securityContext"]["capabilities"] = {"add": ["NET_BIND_SERVICE", "SYS_ADMIN"]}
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and "SYS_ADMIN" in v.message and "NET_BIND" not in v.message

    def test_device_plugin_in_kube_system_is_exempt(self) -> None:
        props: dict[str, Any] = {"metadata": {"name": "nvidia-device-plugin", "namespace": "kube-system"},
                 "spec": {"template": {"spec": {
                     "containers": [{"name": "p", "image": "nvcr.io/nvidia/k8s-device-plugin:v0.17.0",
                                     "securityContext": {"privileged": True}}],
                     "volumes": [{"name": "dp", "hostPath": {"path": "/var/lib/kubelet/device-plugins"}}]}}}}
        daemon_set = "kubernetes:apps/v1:DaemonSet"
        assert run(policy(self.name), resource_args(daemon_set, props)) == []
        props["metadata"]["namespace"] = "gpu-operator"
        assert len(run(policy(self.name), resource_args(daemon_set, props))) == 2


class TestServingProbes:
    name = "k8s-serving-probes"

    @pytest.mark.parametrize("probe", ["readinessProbe", "livenessProbe", "startupProbe"])
    def test_missing_probe(self, probe: str) -> None:
        s = deepcopy(GOOD["prod"])
        del vllm(s)[probe]
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and probe in v.message

    def test_startup_probe_optional_by_config(self) -> None:
        s = deepcopy(GOOD["prod"])
        del vllm(s)["startupProbe"]
        props = s["contracts-deployment"].props
        assert run(policy(self.name), resource_args(DEPLOYMENT, props, {"requireStartupProbe": False})) == []

    def test_non_serving_workloads_need_no_probes(self) -> None:
        s = deepcopy(GOOD["prod"])
        labels = s["contracts-deployment"].props["metadata"]["labels"]
        del labels["servekit.io/role"], labels["servekit.io/model"]
        del s["contracts-deployment"].props["spec"]["template"]["metadata"]["labels"]["servekit.io/role"]
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            del vllm(s)[probe]
        assert self.name not in violated(s, "prod")
        # ... and the SLA gate Job in the good fixture has no probes either.
        assert run(policy(self.name), resource_args("kubernetes:batch/v1:Job", GOOD["prod"]["sla-gate"].props)) == []


class TestNoInlineSecrets:
    name = "k8s-no-inline-secrets"

    @pytest.mark.parametrize(("var", "value"), [
        ("HF_TOKEN", "hf_" + "A1b2" * 9),
        ("VLLM_API_KEY", "s3cr3t"),
        ("OPENAI_API_KEY", "sk-" + "x" * 40),
        ("SOMETHING", "AKIA" + "ABCDEFGHIJKLMNOP"),
    ])
    def test_literal_credentials_in_env(self, var: str, value: str) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["env"].append({"name": var, "value": value})
        [v] = evaluate(s, "prod")
        assert v.policy == self.name and var in v.message and value not in v.message  # never echo the secret

    def test_pointers_and_references_are_fine(self) -> None:
        # The good fixture has HF_TOKEN_PATH=/var/run/..., HF_TOKEN from secretKeyRef, --api-key $(VLLM_API_KEY).
        assert run(policy(self.name), resource_args(DEPLOYMENT, GOOD["prod"]["contracts-deployment"].props)) == []

    @pytest.mark.parametrize("args", [["--api-key", "letmein"], ["--api-key=letmein"], ["--hf-token", "abc"],
                                      ["--model", "m", "hf_" + "z" * 34]])
    def test_literal_credentials_in_args(self, args: list[str]) -> None:
        s = deepcopy(GOOD["prod"])
        vllm(s)["args"] = args
        assert violated(s, "prod") == {self.name}

    def test_pulumi_secret_inlined_into_env(self) -> None:
        props = deepcopy(GOOD["prod"]["contracts-deployment"].props)
        props["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "X", "value": Secret("v")})
        assert len(run(policy(self.name), resource_args(DEPLOYMENT, props))) == 1

    def test_config_map_holding_a_token(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["cm"] = Res("kubernetes:core/v1:ConfigMap", {"metadata": {"name": "c", "namespace": "contracts"},
                                                       "data": {"token": "hf_" + "q" * 34, "model": "llama"}})
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "cm")

    def test_secret_objects_are_where_tokens_belong(self) -> None:
        assert "hf_" in GOOD["prod"]["contracts-hf-token"].props["stringData"]["token"]
        assert violated(GOOD["prod"], "prod") == set()

    def test_token_kinds(self) -> None:
        assert token_kind("ghp_" + "a" * 36) == "a GitHub token"
        assert token_kind("-----BEGIN RSA PRIVATE KEY-----") == "a private key"
        assert token_kind("hf_short") is None


class TestNetworkPolicyPerNamespace:
    name = "k8s-networkpolicy-per-namespace"

    def test_no_network_policy(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["contracts-netpol"]
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "contracts-deployment")

    def test_egress_only_policy_does_not_govern_ingress(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["contracts-netpol"].props["spec"]["policyTypes"] = ["Egress"]
        assert violated(s, "prod") == {self.name}

    def test_policy_in_another_namespace(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["contracts-netpol"].props["metadata"]["namespace"] = "other"
        assert violated(s, "prod") == {self.name}

    def test_computed_namespace_matched_through_dependencies(self) -> None:
        # Auto-named Namespace: its name is unknown at preview, but both objects depend on it.
        s: Stack = {
            "ns": Res("kubernetes:core/v1:Namespace", {"metadata": {"name": UNKNOWN_STRING_VALUE}}),
            "d": Res(DEPLOYMENT, {"metadata": {"namespace": UNKNOWN_STRING_VALUE,
                                               "labels": {"servekit.io/role": "serving"}}}, {"metadata": ["ns"]}),
            "np": Res("kubernetes:networking.k8s.io/v1:NetworkPolicy",
                      {"metadata": {"namespace": UNKNOWN_STRING_VALUE}, "spec": {"podSelector": {}}},
                      {"metadata": ["ns"]}),
        }
        assert run(policy(self.name), stack_args(s)) == []
        del s["np"]
        assert len(run(policy(self.name), stack_args(s))) == 1

    def test_unresolvable_namespace_defers(self) -> None:
        s: Stack = {"d": Res(DEPLOYMENT, {"metadata": {"namespace": UNKNOWN_STRING_VALUE,
                                                       "labels": {"servekit.io/role": "serving"}}})}
        with pytest.raises(UnknownValueError):
            run(policy(self.name), stack_args(s))


class TestPdbForMultiReplica:
    name = "k8s-pdb-for-multi-replica"

    def test_no_pdb(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["contracts-pdb"]
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource, v.enforcement) == (self.name, "contracts-deployment", EnforcementLevel.MANDATORY)

    def test_single_replica_needs_none(self) -> None:
        s = deepcopy(GOOD["dev"])
        assert s["chat-deployment"].props["spec"]["replicas"] == 1
        del s["chat-pdb"]
        assert violated(s, "dev") == set()

    def test_selector_must_match_the_pods(self) -> None:
        s = deepcopy(GOOD["prod"])
        s["contracts-pdb"].props["spec"]["selector"] = {"matchLabels": {"app.kubernetes.io/name": "extract"}}
        assert violated(s, "prod") == {self.name}

    @pytest.mark.parametrize("spec", [{"maxUnavailable": 0.0}, {"maxUnavailable": "0%"}, {"minAvailable": 2.0},
                                      {"minAvailable": "100%"}])
    def test_pdb_that_blocks_every_eviction(self, spec: dict[str, object]) -> None:
        s = deepcopy(GOOD["prod"])
        pdb_spec = s["contracts-pdb"].props["spec"]
        pdb_spec.pop("maxUnavailable")
        pdb_spec.update(spec)
        [v] = evaluate(s, "prod")
        assert (v.policy, v.resource) == (self.name, "contracts-pdb")

    def test_advisory_unless_the_stack_says_otherwise(self) -> None:
        s = deepcopy(GOOD["prod"])
        del s["contracts-pdb"]
        # No config file: the default table applies (and the defaults flag other things, e.g. the llama licence).
        [v] = [v for v in evaluate(s, "prod", pack_config={}) if v.policy == self.name]
        assert v.enforcement == EnforcementLevel.ADVISORY

    def test_selector_semantics(self) -> None:
        labels = {"app": "x", "tier": "gpu"}
        assert selector_matches({}, labels)
        assert selector_matches({"matchExpressions": [{"key": "tier", "operator": "In", "values": ["gpu"]}]}, labels)
        assert not selector_matches({"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["gpu"]}]},
                                    labels)
        assert not selector_matches({"matchExpressions": [{"key": "zone", "operator": "Exists"}]}, labels)
        assert not selector_matches({"matchLabels": {"app": "y"}}, labels)
