"""components.sla_gate under the offline engine (the real program, recording mocks, preview=False).

Expected values come from the stack files read as plain YAML (SLA numbers, replicas), from the
``loadtests.gate`` contract itself (its own parser reads the Job's environment), from the installed
distributions (the pins) and from the serving side's recorded objects (Service, NetworkPolicy).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import os
import re
import subprocess
import sys
import textwrap
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aws_stacks import TMP_STACKS, config, write_stack
from aws_stacks import plan as repo_plan

from components.sla_gate import (
    GATE_REQUIREMENTS,
    GATE_ROOTS,
    LOCUST_VERSION,
    WHEELHOUSE_PREFIX,
    config_key,
    gate_code,
    gate_plan,
)
from loadtests.gate import plan_from_env
from servekit.catalog import REPO_ROOT, default_catalog
from servekit.cli import app
from servekit.cli._common import run_app
from servekit.manifests import kubernetes_objects, validate_object
from servekit.offline import Plan, PlanResource, plan_stack
from servekit.stackfile import resolve_stack

JOB = "kubernetes:batch/v1:Job"
REPO = ("dev", "prod", "regulated")
GATE_DIR = TMP_STACKS / "sla-gate-tests"
write_stack(GATE_DIR, "nogate", config(slaGate=False))


@cache
def plan(stack: str) -> Plan:
    return plan_stack(stack, GATE_DIR) if stack == "nogate" else repo_plan(stack)


def stack_yaml(stack: str) -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]


def gate_resources(p: Plan) -> list[PlanResource]:
    comp = [r for r in p.resources if r.type == "servekit:sla_gate:SlaGate"]
    assert len(comp) == 1, p.stack
    return list(p.descendants(comp[0].urn))


def jobs(p: Plan) -> dict[str, PlanResource]:
    return {r.inputs["metadata"]["labels"]["servekit.io/model"]: r for r in gate_resources(p) if r.type == JOB}


def containers(job: PlanResource) -> list[dict[str, Any]]:
    pod = job.inputs["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def env_of(c: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] for e in c.get("env", [])}


def gate_container(job: PlanResource) -> dict[str, Any]:
    (c,) = job.inputs["spec"]["template"]["spec"]["containers"]
    return c


# --------------------------------------------------------------------------- rendering


def test_servekit_plan_for_prod_renders_one_gate_job_per_model(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(app, ["plan", "--stack", "prod", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rendered = [r for r in out["resources"] if r["type"] == JOB]
    names = sorted(m["name"] for m in stack_yaml("prod")["servekit:models"])
    assert sorted(r["inputs"]["metadata"]["labels"]["servekit.io/model"] for r in rendered) == names
    for r in rendered:
        assert r["inputs"]["metadata"]["labels"]["servekit.io/role"] == "sla-gate"
        assert r["inputs"]["spec"]["template"]["metadata"]["labels"]["servekit.io/role"] == "sla-gate"
        assert r["inputs"]["metadata"]["namespace"] == "servekit-sla-gate"
    assert sorted(out["outputs"]["slaGate"]) == names


@pytest.mark.parametrize("stack", REPO)
def test_every_gate_object_passes_strict_1_34_schemas(stack: str) -> None:
    objs = kubernetes_objects(gate_resources(plan(stack))).objects
    kinds = {o["kind"] for o in objs}
    assert {"Namespace", "ServiceAccount", "ConfigMap", "NetworkPolicy", "Role", "RoleBinding", "Job"} <= kinds
    for obj in objs:
        assert validate_object(obj, "1.34") == "builtin", (obj["kind"], obj["metadata"]["name"])


def test_slagate_false_creates_no_gate() -> None:
    p = plan("nogate")
    assert not [r for r in p.resources if r.type in ("servekit:sla_gate:SlaGate", JOB)]
    assert "slaGate" not in p.outputs


# --------------------------------------------------------------------------- the loadtests.gate contract


@pytest.mark.parametrize("stack", REPO)
def test_job_environment_follows_the_gate_contract_and_the_stack_file(stack: str) -> None:
    p, by_model = plan(stack), jobs(plan(stack))
    for m in stack_yaml(stack)["servekit:models"]:
        name, sla, replicas = m["name"], m["sla"], m.get("replicas", 1)
        env = env_of(gate_container(by_model[name]))
        svc = next(r for r in p.of_type("kubernetes:core/v1:Service") if r.inputs["metadata"]["namespace"] == name)
        port = int(svc.inputs["spec"]["ports"][0]["port"])  # (numbers reach the mocks as floats)
        assert env["SERVEKIT_ENDPOINT"] == f"http://{svc.inputs['metadata']['name']}.{name}.svc.cluster.local:{port}"
        assert env["SERVEKIT_MODEL"] == name
        assert float(env["SERVEKIT_P95_SECONDS"]) == sla["p95E2eSeconds"]
        assert int(env["SERVEKIT_CONCURRENCY"]) == sla["concurrencyPerReplica"] * replicas
        assert env["SERVEKIT_WORKLOAD"] == sla.get("workload", "chat")
        assert float(env["SERVEKIT_MAX_ERROR_RATE"]) == sla.get("maxErrorRate", 0.01)
        if "p95TtftSeconds" in sla:
            assert float(env["SERVEKIT_P95_TTFT_SECONDS"]) == sla["p95TtftSeconds"]
        else:
            assert "SERVEKIT_P95_TTFT_SECONDS" not in env
        # The gate's own parser accepts it and derives the same load and SLA.
        run_plan, target = plan_from_env(env)
        assert run_plan.load.concurrency == target.concurrency == sla["concurrencyPerReplica"] * replicas
        assert target.p95_e2e_s == sla["p95E2eSeconds"] and run_plan.load.model == name
        # The vLLM Service the endpoint names exists and is the model's (the Job depends on it).
        assert svc.urn in by_model[name].dependencies


def test_vllm_network_policy_admits_the_gate_and_the_gate_may_reach_vllm() -> None:
    p = plan("prod")
    gate_pod_labels = next(iter(jobs(p).values())).inputs["spec"]["template"]["metadata"]["labels"]
    for m in stack_yaml("prod")["servekit:models"]:
        serving = next(r for r in p.of_type("kubernetes:networking.k8s.io/v1:NetworkPolicy")
                       if r.inputs["metadata"]["namespace"] == m["name"] and r.inputs["metadata"]["name"].endswith(
                           "-serving"))
        peers = [peer for rule in serving.inputs["spec"]["ingress"] for peer in rule["from"]]
        assert any(peer.get("podSelector", {}).get("matchLabels", {}).items() <= gate_pod_labels.items()
                   and "podSelector" in peer for peer in peers)
    egress = next(r for r in gate_resources(p) if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
                  and r.inputs["metadata"]["name"] == "sla-gate-egress")
    to_vllm = [rule for rule in egress.inputs["spec"]["egress"] if {"protocol": "TCP", "port": 8000} in rule["ports"]]
    (rule,) = to_vllm
    expr = rule["to"][0]["namespaceSelector"]["matchExpressions"][0]
    assert sorted(expr["values"]) == sorted(m["name"] for m in stack_yaml("prod")["servekit:models"])
    deny = next(r for r in gate_resources(p) if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
                and r.inputs["metadata"]["name"] == "default-deny")
    assert deny.inputs["spec"]["policyTypes"] == ["Ingress", "Egress"] and deny.inputs["spec"]["podSelector"] == {}


# --------------------------------------------------------------------------- failing pulumi up, bounded, safe


@pytest.mark.parametrize("stack", REPO)
def test_job_fails_the_deploy_on_a_failed_verdict_and_is_bounded(stack: str) -> None:
    for name, job in jobs(plan(stack)).items():
        spec = job.inputs["spec"]
        assert spec["backoffLimit"] == 0  # no retry that could pass by luck
        assert spec["ttlSecondsAfterFinished"] == 86400
        ann = job.inputs["metadata"]["annotations"]
        assert "pulumi.com/skipAwait" not in ann  # Pulumi awaits the Job: a failed Job fails `pulumi up`
        deadline = spec["activeDeadlineSeconds"]
        env = env_of(gate_container(job))
        window = (float(env["SERVEKIT_DURATION_SECONDS"]) + 2 * float(env["SERVEKIT_REQUEST_TIMEOUT_SECONDS"])
                  + float(env["SERVEKIT_READY_TIMEOUT_SECONDS"]))
        rollout = next(c for c in containers(job) if c["name"] == "wait-rollout")
        rollout_s = int(re.search(r"--timeout=(\d+)s", " ".join(rollout["args"])).group(1))  # type: ignore[union-attr]
        assert window + rollout_s < deadline <= 2 * 3600, (name, deadline)
        assert int(ann["pulumi.com/timeoutSeconds"]) > deadline  # the Job's failure, not Pulumi's timeout
        assert spec["template"]["spec"]["restartPolicy"] == "Never"


@pytest.mark.parametrize("stack", REPO)
def test_every_container_is_non_root_read_only_without_capabilities_and_sized(stack: str) -> None:
    for job in jobs(plan(stack)).values():
        pod = job.inputs["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for c in containers(job):
            sc = c["securityContext"]
            assert sc["runAsNonRoot"] is True and sc["readOnlyRootFilesystem"] is True, c["name"]
            assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
            for kind in ("requests", "limits"):
                assert {"cpu", "memory"} <= set(c["resources"][kind]), (c["name"], kind)
            token_mounts = [v for v in c["volumeMounts"] if v["name"] == "api-token"]
            assert bool(token_mounts) == (c["name"] == "wait-rollout")  # only the waiter holds a token
        ns = next(r for r in gate_resources(plan(stack)) if r.type == "kubernetes:core/v1:Namespace")
        assert ns.inputs["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_rollout_waiter_may_read_only_its_models_deployment() -> None:
    p = plan("prod")
    roles = [r for r in gate_resources(p) if r.type == "kubernetes:rbac.authorization.k8s.io/v1:Role"]
    assert sorted(r.inputs["metadata"]["namespace"] for r in roles) == sorted(jobs(p))
    for role in roles:
        (rule,) = role.inputs["rules"]
        assert rule["resourceNames"] == [role.inputs["metadata"]["namespace"]]
        assert rule["resources"] == ["deployments"] and set(rule["verbs"]) == {"get", "list", "watch"}
    for name, job in jobs(p).items():
        waiter = next(c for c in containers(job) if c["name"] == "wait-rollout")
        assert waiter["args"][:4] == ["rollout", "status", f"deployment/{name}", "--namespace"]


# --------------------------------------------------------------------------- images, code and dependencies


def test_nat_stacks_install_from_pypi_and_pull_upstream_images() -> None:
    for job in jobs(plan("prod")).values():
        names = [c["name"] for c in containers(job)]
        assert names == ["install-deps", "wait-rollout", "gate"]
        pip = next(c for c in containers(job) if c["name"] == "install-deps")
        assert "--index-url" in pip["args"] and "https://pypi.org/simple" in pip["args"]
        assert {"--no-deps", "--only-binary=:all:"} <= set(pip["args"])
        assert gate_container(job)["image"] == f"locustio/locust:{LOCUST_VERSION}"


def test_egress_none_pulls_through_the_mirror_and_installs_from_the_model_store_wheelhouse() -> None:
    p = plan("regulated")
    bucket = p.outputs["modelStoreBucket"]
    registry = p.outputs["imageRegistry"]
    for job in jobs(p).values():
        cs = {c["name"]: c for c in containers(job)}
        assert list(cs) == ["fetch-wheels", "install-deps", "wait-rollout", "gate"]
        for c in cs.values():
            assert c["image"].startswith(f"{registry}/"), c["image"]  # nothing from the internet
        assert cs["gate"]["image"] == f"{registry}/docker-hub/locustio/locust:{LOCUST_VERSION}"
        assert cs["fetch-wheels"]["args"][:3] == ["s3", "sync", f"s3://{bucket}/{WHEELHOUSE_PREFIX}/"]
        assert {"--no-index", "--find-links"} <= set(cs["install-deps"]["args"])
        assert "--index-url" not in cs["install-deps"]["args"]
    assoc = next(r for r in gate_resources(p) if r.type == "aws:eks/podIdentityAssociation:PodIdentityAssociation")
    assert (assoc.inputs["namespace"], assoc.inputs["serviceAccount"]) == ("servekit-sla-gate", "sla-gate")
    role_policy = next(r for r in gate_resources(p) if r.type == "aws:iam/rolePolicy:RolePolicy")
    policy = json.loads(role_policy.inputs["policy"])
    gets = [s for s in policy["Statement"] if "s3:GetObject" in s["Action"]]
    assert [s["Resource"] for s in gets] == [f"arn:aws:s3:::{bucket}/{WHEELHOUSE_PREFIX}/*"]
    egress = next(r for r in gate_resources(p) if r.type == "kubernetes:networking.k8s.io/v1:NetworkPolicy"
                  and r.inputs["metadata"]["name"] == "sla-gate-egress")
    assert any(peer.get("ipBlock", {}).get("cidr") == "169.254.170.23/32"
               for rule in egress.inputs["spec"]["egress"] for peer in rule.get("to", []))


def test_the_code_configmap_is_the_gates_whole_first_party_closure(tmp_path: Path) -> None:
    """Unpack the ConfigMap as the volume would and import the gate from it alone (no repo on the path)."""
    p = plan("prod")
    cm = next(r for r in gate_resources(p) if r.type == "kubernetes:core/v1:ConfigMap")
    job = next(iter(jobs(p).values()))
    (src,) = [v for v in job.inputs["spec"]["template"]["spec"]["volumes"] if v["name"] == "src"]
    for item in src["configMap"]["items"]:
        dest = tmp_path / item["path"]
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(cm.inputs["data"][item["key"]])
    assert sum(len(v) for v in cm.inputs["data"].values()) < 1_000_000  # ConfigMap limit: 1 MiB
    probe = textwrap.dedent(f"""\
        import importlib, os, sys
        root = os.path.realpath({str(REPO_ROOT)!r})
        sys.path[:] = [{str(tmp_path)!r}] + [p for p in sys.path if p and os.path.realpath(p) != root]
        for m in {list(GATE_ROOTS)!r}:
            importlib.import_module(m)
        bad = [n for n, mod in sys.modules.items() if n.split(".")[0] in ("loadtests", "servekit")
               and not os.path.realpath(getattr(mod, "__file__", "") or "").startswith({str(tmp_path)!r})]
        assert not bad, bad
        from servekit.workloads import profile
        from servekit.spec import WorkloadProfile
        profile(WorkloadProfile.CHAT)  # reads servekit/data/workloads.yaml from the volume
        print("ok")
        """)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, env=env,
                         timeout=120, check=False)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]
    assert cm.inputs["data"]["requirements.txt"] == "".join(f"{n}=={v}\n" for n, v in GATE_REQUIREMENTS)
    assert {config_key(f) for f in gate_code().files} | {"requirements.txt"} == set(cm.inputs["data"])


def _import_names(dist: str) -> set[str]:
    files = md.distribution(dist).files or []
    tops = {f.parts[0].removesuffix(".py") for f in files
            if f.parts and not f.parts[0].endswith((".dist-info", ".data")) and not f.parts[0].startswith(("__", "."))}
    return {t for t in tops if t.isidentifier()}


def _requires(dist: str) -> list[str]:
    """A distribution's unconditional requirements (no extras, markers true on Linux CPython)."""
    from packaging.requirements import Requirement

    out = []
    for raw in md.requires(dist) or []:
        req = Requirement(raw)
        if req.marker is None or req.marker.evaluate({"extra": ""}):
            out.append(req.name)
    return out


def _closure(dist: str) -> set[str]:
    seen: set[str] = set()
    todo = [dist]
    while todo:
        d = todo.pop()
        key = d.lower().replace("_", "-")
        if key in seen:
            continue
        seen.add(key)
        todo += _requires(d)
    return seen


def test_pins_are_the_tested_versions_and_cover_every_import_the_locust_image_lacks() -> None:
    assert md.version("locust") == LOCUST_VERSION
    for dist, version in GATE_REQUIREMENTS:
        assert md.version(dist) == version, dist
    pinned = {d.lower() for d, _ in GATE_REQUIREMENTS}
    in_image = _closure("locust")
    # --no-deps over a closed set: every pinned distribution's requirements are pinned or in the image.
    for dist, _ in GATE_REQUIREMENTS:
        for req in _requires(dist):
            assert req.lower() in pinned | in_image, (dist, req)
    provided = set().union(*(_import_names(d) for d in in_image | pinned))
    missing = gate_code().third_party - provided
    assert not missing, missing
    assert {"pydantic", "yaml"} <= gate_code().third_party  # why the pins exist at all


# --------------------------------------------------------------------------- re-running, policy


def test_the_job_name_changes_exactly_when_what_it_measures_changes() -> None:
    resolved = resolve_stack("prod")
    dep, placement = resolved.spec.models[0], resolved.placements[0]
    digest = gate_code().digest
    a = gate_plan(dep, placement, catalog=default_catalog(), code_digest=digest)
    assert a.job_name == gate_plan(dep, placement, catalog=default_catalog(), code_digest=digest).job_name
    stricter = dep.model_copy(update={"sla": dep.sla.model_copy(update={"p95_e2e_seconds": 12.0})})
    assert gate_plan(stricter, placement, catalog=default_catalog(), code_digest=digest).job_name != a.job_name
    assert gate_plan(dep, placement, catalog=default_catalog(), code_digest="0" * 64).job_name != a.job_name
    assert a.job_name == jobs(plan("prod"))[dep.name].inputs["metadata"]["name"]
    assert len(a.job_name) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", a.job_name)


def test_policy_pack_finds_the_gate_on_prod_and_would_refuse_prod_without_it() -> None:
    for path in (REPO_ROOT, REPO_ROOT / "tests" / "policies"):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))
    from fixtures import PROVIDERS, Res, policy, run, stack_args

    from policies.rules import load_pack_config, resolve

    gate_policy = policy("sla-gate-required")
    cfg = resolve([gate_policy], load_pack_config("prod"))[gate_policy.name].config
    everything = {r.name: Res(r.type, r.inputs) for r in plan("prod").resources if r.custom}
    assert run(gate_policy, stack_args(everything, PROVIDERS["prod"], cfg)) == []
    without = {n: r for n, r in everything.items() if r.type != JOB}
    assert run(gate_policy, stack_args(without, PROVIDERS["prod"], cfg))  # the check can fail
