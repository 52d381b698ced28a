"""``servekit manifests``: every Kubernetes object of every stack, strict-schema valid, secrets redacted."""

from __future__ import annotations

import copy
import json
import textwrap
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest

from servekit.cli import app
from servekit.cli._common import run_app
from servekit.manifests import REDACTED, Extracted, PlannedResource, kubernetes_objects, validate_object
from servekit.offline import plan_stack
from servekit.stackfile import load_stack

STACKS = ("dev", "prod", "regulated")

# A stack exercising what the repository's stacks do not: autoscaling (KEDA ScaledObject), LoRA
# adapters (init container + ConfigMap, and the hub-token Secret an hf:// adapter gets), s3 source
# under NAT egress, a preventive restart every 5 h.
EXTRA = textwrap.dedent("""\
    config:
      aws:region: us-east-1
      servekit:tags: {owner: t@example.com, costCenter: cc-1, dataClassification: internal}
      servekit:network: {azCount: 2, egress: nat}
      servekit:cluster: {version: "1.35"}
      servekit:hfToken: {secure: v1:c2VjcmV0LWluLWEtZmFrZS1jaXBoZXJ0ZXh0}
      servekit:models:
        - name: chat
          model: qwen2.5-7b-instruct
          gpus: [l4]
          replicas: 2
          source: s3
          restartEveryHours: 5
          autoscaling: {minReplicas: 1, maxReplicas: 4}
          loraAdapters: [{name: sql, source: "s3://adapters/sql"}, {name: hr, source: "hf://acme/hr"}]
          sla: {p95E2eSeconds: 10, concurrencyPerReplica: 8}
    """)


@pytest.fixture(scope="module")
def extra_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("stacks")
    (d / "Pulumi.extra.yaml").write_text(EXTRA)
    return d


@pytest.fixture(scope="module")
def objects(extra_dir: Path) -> dict[str, tuple[str, Extracted]]:
    out = {s: (load_stack(s).cluster.version, kubernetes_objects(plan_stack(s).resources)) for s in STACKS}
    out["extra"] = ("1.35", kubernetes_objects(plan_stack("extra", extra_dir).resources))
    return out


def test_every_object_of_every_stack_passes_strict_validation(objects: dict[str, tuple[str, Extracted]]) -> None:
    kinds: set[str] = set()
    for stack, (version, extracted) in objects.items():
        assert extracted.objects, stack
        for obj in extracted.objects:
            how = validate_object(obj, version)
            assert how in ("builtin", "crd"), (stack, obj["apiVersion"], obj["kind"])
            kinds.add(obj["kind"])
    # the checks covered the whole serving side, including the CRD instance
    assert {"Deployment", "Service", "NetworkPolicy", "PodDisruptionBudget", "Namespace", "ServiceAccount",
            "Secret", "CronJob", "Role", "RoleBinding", "ConfigMap", "ScaledObject"} <= kinds


def test_validation_is_strict_enough_to_fail(objects: dict[str, tuple[str, Extracted]]) -> None:
    """Mutations a human could make: an unknown field, a wrong type; both must be rejected."""
    version, extracted = objects["extra"]
    dep = next(o for o in extracted.objects if o["kind"] == "Deployment")
    bad = copy.deepcopy(dep)
    bad["spec"]["template"]["spec"]["containers"][0]["gpus"] = 4  # not a Container field
    with pytest.raises(kubernetes_validate.ValidationError):
        validate_object(bad, version)
    so = next(o for o in extracted.objects if o["kind"] == "ScaledObject")
    for mutate in (lambda s: s["spec"].update(maxReplicas=4),  # the real field is maxReplicaCount
                   lambda s: s["spec"].update(minReplicaCount="1"),  # must be an integer
                   lambda s: s["spec"].pop("scaleTargetRef")):  # required
        broken = copy.deepcopy(so)
        mutate(broken)
        with pytest.raises(jsonschema.ValidationError):
            validate_object(broken, version)


def test_scaled_object_is_bounded_by_the_stack(objects: dict[str, tuple[str, Extracted]]) -> None:
    so = next(o for o in objects["extra"][1].objects if o["kind"] == "ScaledObject")
    assert (so["spec"]["minReplicaCount"], so["spec"]["maxReplicaCount"]) == (1, 4)
    cron = next(o for o in objects["extra"][1].objects if o["kind"] == "CronJob")
    assert cron["spec"]["schedule"].split()[1] == "*/4"  # 5 h is not a divisor of 24: every 4 h
    assert cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]["image"].endswith(
        "kubectl:v1.35.0")  # kubectl follows the cluster version


def test_secret_values_are_redacted() -> None:
    token = "hf_plainTOKENvalue"
    resources = [
        PlannedResource("kubernetes:core/v1:Secret", "s", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token", "namespace": "m"},
            "stringData": {"token": token}, "data": {"other": "aGVsbG8="}}),
        PlannedResource("kubernetes:core/v1:Secret", "s2", {
            "apiVersion": "v1", "kind": "Secret", "metadata": {"name": "wrapped", "namespace": "m"},
            "stringData": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270",
                           "value": {"token": token}}}),
        PlannedResource("kubernetes:core/v1:ConfigMap", "c", {
            "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "m"},
            "data": {"x": {"4dabf18193072939515e22adb298388d": "1b47061264138c4ac30d75fd1eb44270", "value": token},
                     "port": 8000.0}}),
        PlannedResource("kubernetes:helm.sh/v3:Release", "r", {"chart": "keda", "values": {"t": token}}),
    ]
    ex = kubernetes_objects(resources)
    assert token not in json.dumps(ex.objects)
    plain, wrapped, cm = ex.objects
    assert plain["stringData"] == {"token": REDACTED} and plain["data"] == {"other": REDACTED}
    assert wrapped["stringData"] == {"token": REDACTED}  # key names kept, values never
    assert cm["data"] == {"x": REDACTED, "port": 8000}
    assert ex.skipped == ["kubernetes:helm.sh/v3:Release r"]


def test_cli_writes_files_and_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m"
    assert run_app(app, ["manifests", "--stack", "prod", "-o", str(out), "--check", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["invalid"] == [] and result["unchecked"] == []
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.yaml"))
    assert "contracts/deployment-contracts.yaml" in files and "_cluster/namespace-contracts.yaml" in files
    assert len(files) == len(result["files"])
    # Re-running replaces its own files; a foreign non-empty directory is refused (exit 2).
    assert run_app(app, ["manifests", "--stack", "dev", "-o", str(out)]) == 0
    assert not (out / "contracts").exists() or not any((out / "contracts").iterdir())
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("mine")
    assert run_app(app, ["manifests", "--stack", "dev", "-o", str(foreign)]) == 2
    assert (foreign / "keep.txt").read_text() == "mine"
