"""VllmService and the serving side of every stack, under Pulumi mocks (preview=False).

Expected values are derived from the inputs the test controls (stack files, the model and
instance catalogs, the stated rules in components/vllm_service.py's docstring), never read back
from the component's own helpers, except where a test says it checks consistency with them.
"""

from __future__ import annotations

import json
import math
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml
from vllm_service_harness import ACCOUNT, REGION, Recorded, build_stack, is_secret, of_type, unwrap

from components.restart import restart_schedule
from components.vllm_service import ENGINE_INIT_SECONDS, LOAD_GBPS, PROBE_PERIOD
from servekit.catalog import default_catalog
from servekit.errors import UserError
from servekit.spec import ModelSource
from servekit.stackfile import load_stack, resolve_stack
from servekit.vllm_flags import VLLM_VERSION

DEPLOYMENT = "kubernetes:apps/v1:Deployment"
STACKS = ("dev", "prod", "regulated")
TOKEN = "hf_KNOWNtoken0123456789abcdefXYZ"


@pytest.fixture(scope="module")
def built() -> dict[str, list[Recorded]]:
    return {s: build_stack(s, hf_token=TOKEN)[0] for s in STACKS}


def write_stack(tmp: Path, name: str, models: str, *, egress: str = "nat", extra: str = "") -> Path:
    body = textwrap.dedent(f"""\
        config:
          aws:region: us-east-1
          servekit:tags: {{owner: t@example.com, costCenter: cc-1, dataClassification: internal}}
          servekit:network: {{azCount: 2, egress: {egress}}}
        """) + textwrap.indent(textwrap.dedent(extra), "  ") + "  servekit:models:\n" + textwrap.indent(
        textwrap.dedent(models), "    ")
    path = tmp / f"Pulumi.{name}.yaml"
    path.write_text(body)
    return path


def deployments(resources: list[Recorded]) -> list[dict[str, Any]]:
    return [unwrap(r.inputs) for r in of_type(resources, DEPLOYMENT)]


def pod_specs(resources: list[Recorded]) -> list[dict[str, Any]]:
    out = [d["spec"]["template"]["spec"] for d in deployments(resources)]
    out += [unwrap(r.inputs)["spec"]["jobTemplate"]["spec"]["template"]["spec"]
            for r in of_type(resources, "kubernetes:batch/v1:CronJob")]
    return out


def all_containers(resources: list[Recorded]) -> list[dict[str, Any]]:
    return [c for p in pod_specs(resources) for c in p.get("initContainers", []) + p["containers"]]


def arg(args: list[str], flag: str) -> str:
    return args[args.index(flag) + 1]


def vllm(deployment: dict[str, Any]) -> dict[str, Any]:
    (c,) = [c for c in deployment["spec"]["template"]["spec"]["containers"] if c["name"] == "vllm"]
    return c


# --------------------------------------------------------------------------- GPUs and shared memory


def test_tp4_model_requests_four_gpus_and_gets_shared_memory(tmp_path: Path) -> None:
    write_stack(tmp_path, "tp4", """\
        - name: big
          model: llama-3.1-70b-instruct
          instanceType: p4de.24xlarge
          tensorParallelSize: 4
          sla: {p95E2eSeconds: 20, concurrencyPerReplica: 16}
        """)
    resources, _ = build_stack("tp4", stacks_dir=tmp_path, hf_token=TOKEN)
    (dep,) = deployments(resources)
    c = vllm(dep)
    assert c["resources"]["requests"]["nvidia.com/gpu"] == "4"
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "4"
    assert arg(c["args"], "--tensor-parallel-size") == "4"
    pod = dep["spec"]["template"]["spec"]
    (shm,) = [v for v in pod["volumes"] if v["name"] == "dshm"]
    assert shm["emptyDir"]["medium"] == "Memory"
    assert shm["emptyDir"]["sizeLimit"] == f"{2 * 4 * 1024}Mi"  # stated rule: 2 GiB per GPU of the replica
    assert {"name": "dshm", "mountPath": "/dev/shm"} in c["volumeMounts"]


def test_every_serving_pod_gets_shared_memory_single_gpu_too(built: dict[str, list[Recorded]]) -> None:
    for stack, resources in built.items():
        for dep in deployments(resources):
            c = vllm(dep)
            gpus = int(c["resources"]["limits"]["nvidia.com/gpu"])
            shm = [v for v in dep["spec"]["template"]["spec"]["volumes"] if v["name"] == "dshm"]
            assert shm and shm[0]["emptyDir"]["medium"] == "Memory", stack
            assert any(m["mountPath"] == "/dev/shm" for m in c["volumeMounts"]), stack
            assert gpus == int(arg(c["args"], "--tensor-parallel-size")), stack


# --------------------------------------------------------------------------- resources, probes, images


def test_every_container_has_requests_and_limits(built: dict[str, list[Recorded]]) -> None:
    seen = 0
    for stack, resources in built.items():
        for c in all_containers(resources):
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (stack, c["name"], kind)
            seen += 1
    assert seen >= 5  # dev 1, prod 2 + the restart CronJob's kubectl, regulated 1


def test_serving_containers_have_startup_readiness_and_liveness_on_health(built: dict[str, list[Recorded]]) -> None:
    # Probes apply to long-running containers; Kubernetes forbids them on init containers, and the
    # restart CronJob's kubectl runs to completion.
    for resources in built.values():
        for dep in deployments(resources):
            c = vllm(dep)
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                assert c[probe]["httpGet"] == {"path": "/health", "port": "http"}, probe
            assert {"name": "http", "containerPort": 8000, "protocol": "TCP"} in c["ports"]


def test_images_are_pinned_never_latest(built: dict[str, list[Recorded]]) -> None:
    for stack, resources in built.items():
        for c in all_containers(resources):
            image = c["image"]
            last = image.rsplit("/", 1)[-1]
            assert "@sha256:" in image or (":" in last and not last.endswith(":latest")), (stack, image)
        for dep in deployments(resources):
            assert vllm(dep)["image"].endswith(f"vllm/vllm-openai:v{VLLM_VERSION}")


def test_requests_fit_the_node_when_it_is_full(built: dict[str, list[Recorded]]) -> None:
    """floor(GPUs/TP) replicas on one node must fit its vCPU and memory with room for the system."""
    catalog = default_catalog()
    for stack in STACKS:
        resolved = resolve_stack(stack)
        by_name = {d["metadata"]["name"]: d for d in deployments(built[stack])}
        for p in resolved.placements:
            inst = catalog.instances[p.instance_type]
            per_node = inst.gpus // p.tensor_parallel_size
            c = vllm(by_name[p.name])
            req, lim = c["resources"]["requests"], c["resources"]["limits"]
            assert req == lim  # Guaranteed QoS
            cpu = int(req["cpu"].removesuffix("m")) / 1000
            mem_gib = int(req["memory"].removesuffix("Mi")) / 1024
            assert per_node * cpu <= inst.vcpu - 1, (stack, p.name)  # at least 1 vCPU left for the system
            assert per_node * mem_gib <= inst.memory_gib - 3, (stack, p.name)  # and 3 GiB
            assert cpu >= 0.5 * inst.vcpu / per_node, (stack, p.name)  # but no silly under-request
            assert mem_gib >= 0.75 * inst.memory_gib / per_node, (stack, p.name)


# --------------------------------------------------------------------------- engine flags from the SLA


def test_max_num_seqs_equals_the_sla_batch(built: dict[str, list[Recorded]]) -> None:
    for stack in STACKS:
        sla = {m.name: m.sla.concurrency_per_replica for m in load_stack(stack).models}
        deps = deployments(built[stack])
        assert len(deps) == len(sla)
        for dep in deps:
            assert int(arg(vllm(dep)["args"], "--max-num-seqs")) == sla[dep["metadata"]["name"]], stack
            assert dep["metadata"]["annotations"]["servekit.io/sla-concurrency-per-replica"] == str(
                sla[dep["metadata"]["name"]])


def test_startup_budget_fits_a_70b_bf16_load_from_the_hub(built: dict[str, list[Recorded]]) -> None:
    model = default_catalog().model("llama-3.1-70b-instruct")
    weights_gb = model.total_params * 2 / 1e9  # bf16: 2 bytes per parameter
    load_seconds = weights_gb / LOAD_GBPS[ModelSource.HF]
    assert load_seconds > 500  # a real 140 GB download at the stated hub rate, not a toy
    (dep,) = [d for d in deployments(built["prod"]) if d["metadata"]["name"] == "contracts"]
    probe = vllm(dep)["startupProbe"]
    budget = probe["periodSeconds"] * probe["failureThreshold"]
    assert probe["periodSeconds"] == PROBE_PERIOD
    assert budget >= ENGINE_INIT_SECONDS + load_seconds
    assert budget <= 2 * 3600  # a hung start is still noticed within two hours
    assert dep["spec"]["progressDeadlineSeconds"] >= budget
    assert int(dep["metadata"]["annotations"]["pulumi.com/timeoutSeconds"]) > dep["spec"]["progressDeadlineSeconds"]


def test_rolling_update_keeps_capacity_and_drains(built: dict[str, list[Recorded]]) -> None:
    for stack, resources in built.items():
        sla = {m.name: m.sla.p95_e2e_seconds for m in load_stack(stack).models}
        for dep in deployments(resources):
            assert dep["spec"]["strategy"] == {"type": "RollingUpdate",
                                               "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
            pod = dep["spec"]["template"]["spec"]
            sleep = vllm(dep)["lifecycle"]["preStop"]["sleep"]["seconds"]
            assert sleep >= 10 + 2 * sla[dep["metadata"]["name"]]  # propagation + two p95s of in-flight work
            assert pod["terminationGracePeriodSeconds"] > sleep
        for pdb in of_type(resources, "kubernetes:policy/v1:PodDisruptionBudget"):
            assert unwrap(pdb.inputs)["spec"]["maxUnavailable"] == 1


def test_scheduling_on_the_gpu_pool_spread_over_zones(built: dict[str, list[Recorded]]) -> None:
    for stack in STACKS:
        placements = {p.name: p for p in resolve_stack(stack).placements}
        for dep in deployments(built[stack]):
            p = placements[dep["metadata"]["name"]]
            pod = dep["spec"]["template"]["spec"]
            assert pod["nodeSelector"] == {"servekit.io/gpu": p.gpu_type,
                                           "node.kubernetes.io/instance-type": p.instance_type}
            assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
            zone = [t for t in pod["topologySpreadConstraints"] if t["topologyKey"] == "topology.kubernetes.io/zone"]
            assert zone and zone[0]["whenUnsatisfiable"] == ("DoNotSchedule" if p.replicas > 1 else "ScheduleAnyway")


def test_security_context(built: dict[str, list[Recorded]]) -> None:
    for resources in built.values():
        for pod in pod_specs(resources):
            assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
            for c in pod.get("initContainers", []) + pod["containers"]:
                sc = c["securityContext"]
                assert sc["allowPrivilegeEscalation"] is False
                assert sc["capabilities"]["drop"] == ["ALL"]
                assert sc.get("privileged", False) is False
        for dep in deployments(resources):
            assert dep["spec"]["template"]["spec"]["automountServiceAccountToken"] is False


# --------------------------------------------------------------------------- labels for the policy pack


def test_deployments_carry_policy_labels(built: dict[str, list[Recorded]]) -> None:
    catalog = default_catalog()
    for stack in STACKS:
        spec = load_stack(stack)
        by_name = {d["metadata"]["name"]: d for d in deployments(built[stack])}
        for m in spec.models:
            model = catalog.model(m.model)
            labels = by_name[m.name]["metadata"]["labels"]
            assert labels["servekit.io/model"] == m.model
            assert labels["servekit.io/license"] == model.license.id
            assert labels["servekit.io/commercial-use"] == str(model.license.commercial_use).lower()
            assert labels["servekit.io/data-classification"] == spec.tags.data_classification.value
            assert float(labels["servekit.io/sla-p95-seconds"]) == m.sla.p95_e2e_seconds
            assert labels["servekit.io/role"] == "serving"
            pod_labels = by_name[m.name]["spec"]["template"]["metadata"]["labels"]
            assert pod_labels["servekit.io/role"] == "serving" and pod_labels["servekit.io/model"] == m.model


# --------------------------------------------------------------------------- isolation


def test_network_policies_default_deny_and_allow_only_clients_gate_and_monitoring(
        built: dict[str, list[Recorded]]) -> None:
    for stack, resources in built.items():
        pols = [unwrap(r.inputs) for r in of_type(resources, "kubernetes:networking.k8s.io/v1:NetworkPolicy")]
        for dep in deployments(resources):
            ns = dep["metadata"]["namespace"]
            mine = [p for p in pols if p["metadata"]["namespace"] == ns]
            deny = [p for p in mine if p["metadata"]["name"] == "default-deny"]
            assert deny and deny[0]["spec"]["podSelector"] == {} and \
                sorted(deny[0]["spec"]["policyTypes"]) == ["Egress", "Ingress"] and \
                "ingress" not in deny[0]["spec"] and "egress" not in deny[0]["spec"], stack
            (serving,) = [p for p in mine if p["metadata"]["name"] == f"{ns}-serving"]
            (rule,) = serving["spec"]["ingress"]
            peers = rule["from"]
            assert {"namespaceSelector": {"matchLabels": {"servekit.io/client": "true"}}} in peers
            assert {"namespaceSelector": {}, "podSelector": {"matchLabels": {"servekit.io/role": "sla-gate"}}} in peers
            assert len(peers) == 3
            assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
            ports = sorted((p["protocol"], p["port"]) for e in serving["spec"]["egress"] for p in e["ports"])
            assert ("UDP", 53) in ports and ("TCP", 443) in ports
            assert all(port in (53, 80, 443) for _, port in ports)


def test_hf_token_secret_only_where_needed_and_never_plain(built: dict[str, list[Recorded]]) -> None:
    catalog = default_catalog()
    for stack, resources in built.items():
        spec = load_stack(stack)
        needs = sorted(m.name for m in spec.models if m.source is ModelSource.HF and catalog.model(m.model).gated)
        secrets = of_type(resources, "kubernetes:core/v1:Secret")
        assert sorted(unwrap(s.inputs)["metadata"]["namespace"] for s in secrets) == needs, stack
        for s in secrets:
            assert is_secret(s.inputs["stringData"]) or is_secret(s.inputs["stringData"]["token"])
            assert unwrap(s.inputs)["stringData"] == {"token": TOKEN}
        # Nowhere else: every other input, with secret-marked values removed, is free of the token.
        from servekit.manifests import redact

        for r in resources:
            assert TOKEN not in json.dumps(redact(r.inputs)), (stack, r.typ, r.name)
        for dep in deployments(resources):
            env = {e["name"]: e for e in vllm(dep)["env"]}
            if dep["metadata"]["name"] in needs:
                assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {
                    "secretKeyRef": {"name": "hf-token", "key": "token"}}}
            else:
                assert "HF_TOKEN" not in env


def test_gated_model_without_a_token_warns_and_waits_for_the_secret() -> None:
    resources, serving = build_stack("prod", hf_token=None)
    assert not of_type(resources, "kubernetes:core/v1:Secret")
    for name in ("contracts", "extract"):  # both Llama 3.1 models are gated
        (warning,) = serving.services[name].warnings
        assert "gated on the Hugging Face hub" in warning and "servekit:hfToken" in warning
    for dep in deployments(resources):
        env = {e["name"]: e for e in vllm(dep)["env"]}
        assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf-token", "key": "token"}}
    _, dev = build_stack("dev", hf_token=None)
    assert dev.services["chat"].warnings == []  # Qwen is not gated


# --------------------------------------------------------------------------- regulated: ECR and S3 only


def test_regulated_pods_pull_only_from_ecr_and_load_weights_from_s3(built: dict[str, list[Recorded]]) -> None:
    resources = built["regulated"]
    ecr = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/"
    for c in all_containers(resources):
        assert c["image"].startswith(ecr), c["image"]
    (bucket,) = of_type(resources, "aws:s3/bucket:Bucket")
    bucket_name = f"servekit-regulated-models-{ACCOUNT}-{REGION}"  # the documented naming rule
    assert bucket.inputs["bucket"] == bucket_name
    for dep in deployments(resources):
        c = vllm(dep)
        assert c["image"] == f"{ecr}docker-hub/vllm/vllm-openai:v{VLLM_VERSION}"
        assert arg(c["args"], "--load-format") == "runai_streamer"
        assert arg(c["args"], "--model").startswith(f"s3://{bucket_name}/models/")
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env["HF_HUB_OFFLINE"] == "1" and "HF_TOKEN" not in env
        assert int(env["RUNAI_STREAMER_MEMORY_LIMIT"]) <= int(c["resources"]["requests"]["memory"][:-2]) * 2**20
    rules = {r.inputs["ecrRepositoryPrefix"]: r.inputs for r in
             of_type(resources, "aws:ecr/pullThroughCacheRule:PullThroughCacheRule")}
    assert rules["docker-hub"]["upstreamRegistryUrl"] == "registry-1.docker.io"
    assert "credentialArn" in rules["docker-hub"]  # Docker Hub needs a Secrets Manager credential
    assert "credentialArn" not in rules["quay"]


def test_s3_pods_read_only_their_own_prefix(built: dict[str, list[Recorded]]) -> None:
    resources = built["regulated"]
    (assoc,) = of_type(resources, "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert assoc.inputs["namespace"] == "notes" and assoc.inputs["serviceAccount"] == "notes"
    (pol,) = [r for r in of_type(resources, "aws:iam/rolePolicy:RolePolicy") if r.name.endswith("read-weights")]
    doc = json.loads(pol.inputs["policy"])
    actions = {a for s in doc["Statement"] for a in s["Action"]}
    assert actions == {"s3:ListBucket", "s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"}
    get = next(s for s in doc["Statement"] if "s3:GetObject" in s["Action"])
    bucket = f"servekit-regulated-models-{ACCOUNT}-{REGION}"
    assert get["Resource"] == [f"arn:aws:s3:::{bucket}/models/Qwen/Qwen2.5-32B-Instruct/main/*"]
    # hf-source stacks give their pods no AWS role at all
    assert not of_type(built["dev"], "aws:iam/role:Role")


# --------------------------------------------------------------------------- restart, autoscaling, LoRA


def test_preventive_restart_cronjob_least_privilege(built: dict[str, list[Recorded]]) -> None:
    resources = built["prod"]
    (cron,) = [unwrap(r.inputs) for r in of_type(resources, "kubernetes:batch/v1:CronJob")]
    assert cron["metadata"]["namespace"] == "contracts"  # restartEveryHours: 24 on contracts only
    minute, hour, dom, month, dow = cron["spec"]["schedule"].split()
    assert (hour, dom, month, dow) == ("3", "*", "*", "*") and 0 <= int(minute) < 60
    (role,) = [unwrap(r.inputs) for r in of_type(resources, "kubernetes:rbac.authorization.k8s.io/v1:Role")]
    assert role["rules"] == [{"apiGroups": ["apps"], "resources": ["deployments"], "resourceNames": ["contracts"],
                              "verbs": ["get", "patch"]}]
    c = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert c["args"][:3] == ["rollout", "restart", "deployment/contracts"]
    assert c["image"].startswith("registry.k8s.io/kubectl:v1.34.")


@pytest.mark.parametrize("hours", [1, 2, 3, 5, 7, 8, 10, 12, 23, 24, 36, 48, 72, 100, 168])
def test_restart_schedule_never_longer_than_asked(hours: int) -> None:
    s = restart_schedule(hours, "m")
    assert s.effective_hours <= hours
    _minute, hour, dom, _, dow = s.cron.split()
    if hours < 24:
        assert 24 % s.effective_hours == 0 and s.effective_hours > hours / 2
        assert hour == ("*" if s.effective_hours == 1 else f"*/{s.effective_hours}")
    elif hours >= 168:
        assert dow == "0" and dom == "*"
    else:
        assert s.effective_hours == 24 * (hours // 24)
        assert dom == ("*" if hours // 24 == 1 else f"*/{hours // 24}")


def test_autoscaled_model_gets_a_bounded_scaled_object_and_pinned_keda(tmp_path: Path) -> None:
    write_stack(tmp_path, "auto", """\
        - name: chat
          model: qwen2.5-7b-instruct
          gpus: [l4]
          replicas: 2
          autoscaling: {minReplicas: 1, maxReplicas: 5, waitingRequestsTarget: 3}
          sla: {p95E2eSeconds: 10, concurrencyPerReplica: 8}
        """)
    resources, _ = build_stack("auto", stacks_dir=tmp_path, prometheus_address="http://prom.monitoring.svc:9090")
    (so,) = [unwrap(r.inputs) for r in of_type(resources, "kubernetes:keda.sh/v1alpha1:ScaledObject")]
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 5)
    assert so["spec"]["scaleTargetRef"]["name"] == "chat"
    (trig,) = so["spec"]["triggers"]
    assert trig["type"] == "prometheus" and trig["metadata"]["threshold"] == "3"
    assert trig["metadata"]["serverAddress"] == "http://prom.monitoring.svc:9090"
    assert "vllm:num_requests_waiting" in trig["metadata"]["query"]
    assert 'model_name="chat"' in trig["metadata"]["query"]
    (rel,) = of_type(resources, "kubernetes:helm.sh/v3:Release")
    assert rel.inputs["chart"] == "keda" and rel.inputs["version"] == "2.16.1"


def test_lora_adapters_are_fetched_by_an_init_container_and_passed_to_vllm(tmp_path: Path) -> None:
    write_stack(tmp_path, "lora", """\
        - name: chat
          model: qwen2.5-7b-instruct
          gpus: [l4]
          loraAdapters:
            - {name: sql, source: "s3://adapters-bucket/sql-v3"}
            - {name: support, source: "hf://acme/support-lora"}
          sla: {p95E2eSeconds: 10, concurrencyPerReplica: 8}
        """)
    resources, _ = build_stack("lora", stacks_dir=tmp_path, hf_token=TOKEN)
    (dep,) = deployments(resources)
    pod = dep["spec"]["template"]["spec"]
    (init,) = pod["initContainers"]
    assert init["args"] == ["--dest", "/adapters", "sql=s3://adapters-bucket/sql-v3", "support=hf://acme/support-lora"]
    c = vllm(dep)
    args = c["args"]
    i = args.index("--lora-modules")
    assert args[i + 1:i + 3] == ["sql=/adapters/sql", "support=/adapters/support"]
    assert arg(args, "--max-loras") == "2" and "--enable-lora" in args
    assert {"name": "adapters", "mountPath": "/adapters", "readOnly": True} in c["volumeMounts"]
    (cm,) = [unwrap(r.inputs) for r in of_type(resources, "kubernetes:core/v1:ConfigMap")]
    assert "def fetch_s3" in cm["data"]["adapter_fetch.py"]
    # The hub token is offered to the init container (an hf:// adapter), through the Secret only.
    assert any(e["name"] == "HF_TOKEN" and "valueFrom" in e for e in init["env"])
    (pol,) = [r for r in of_type(resources, "aws:iam/rolePolicy:RolePolicy") if r.name.endswith("read-adapters")]
    doc = json.loads(pol.inputs["policy"])
    assert {"arn:aws:s3:::adapters-bucket/sql-v3/*"} == {
        s["Resource"] for s in doc["Statement"] if s["Action"] == ["s3:GetObject"]}


# --------------------------------------------------------------------------- impossible combinations

BASE_MODEL = """\
- name: chat
  model: qwen2.5-7b-instruct
  gpus: [l4]
  sla: {p95E2eSeconds: 10, concurrencyPerReplica: 8}
"""


@pytest.mark.parametrize(("case", "models", "extra", "message", "path"), [
    ("dup-lora", BASE_MODEL + "  loraAdapters: [{name: a, source: 's3://b/x'}, {name: a, source: 's3://b/y'}]\n",
     "", "LoRA adapter names must be unique; repeated: a", "config.servekit:models[0]"),
    ("lora-as-model", BASE_MODEL + "  loraAdapters: [{name: chat, source: 's3://b/x'}]\n",
     "", "a LoRA adapter cannot be named like the served model ('chat')", "config.servekit:models[0]"),
    ("min-above-max", BASE_MODEL + "  autoscaling: {minReplicas: 4, maxReplicas: 2}\n",
     "", "minReplicas (4) is above maxReplicas (2)", "config.servekit:models[0].autoscaling"),
    ("s3-no-store", BASE_MODEL + "  source: s3\n", "servekit:modelStore: {enabled: false}\n",
     # a stack-level rule: no single dotted path, the message names the setting and the model
     "source s3 needs the model store, but modelStore.enabled is false; source s3 given for: chat", ""),
])
def test_impossible_combinations_fail_with_one_clear_message(tmp_path: Path, case: str, models: str, extra: str,
                                                             message: str, path: str) -> None:
    file = write_stack(tmp_path, case, models, extra=extra)
    yaml.safe_load(file.read_text())  # the file itself is valid YAML: the combination is what is wrong
    with pytest.raises(UserError) as err:
        resolve_stack(case, stacks_dir=tmp_path)
    text = str(err.value)
    assert "\n" not in text
    assert message in text
    assert text.startswith(str(file)) or f"Pulumi.{case}.yaml" in text
    assert (err.value.path or "").startswith(path)


def test_the_working_twin_of_each_impossible_stack_loads(tmp_path: Path) -> None:
    """The same files with the one conflict removed load, so the failures above are about the conflict."""
    write_stack(tmp_path, "ok", BASE_MODEL + "  loraAdapters: [{name: a, source: 's3://b/x'}, "
                "{name: b, source: 's3://b/y'}]\n  autoscaling: {minReplicas: 1, maxReplicas: 2}\n  source: s3\n",
                extra="servekit:modelStore: {enabled: true}\n")
    assert resolve_stack("ok", stacks_dir=tmp_path).spec.models[0].source is ModelSource.S3


def test_startup_budget_follows_weight_size(built: dict[str, list[Recorded]]) -> None:
    budgets = {}
    for stack in STACKS:
        placements = {p.name: p for p in resolve_stack(stack).placements}
        for dep in deployments(built[stack]):
            probe = vllm(dep)["startupProbe"]
            budgets[(stack, dep["metadata"]["name"])] = (placements[dep["metadata"]["name"]].weights_gib,
                                                         probe["failureThreshold"] * probe["periodSeconds"])
    hf = [(w, b) for (s, _), (w, b) in budgets.items() if s != "regulated"]
    hf.sort()
    assert [b for _, b in hf] == sorted(b for _, b in hf)  # bigger weights, longer budget (same source)
    assert math.isclose(hf[-1][0], 131.4, abs_tol=0.5)  # prod's 70B bf16 is the largest
