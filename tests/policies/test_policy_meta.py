"""Every policy carries the metadata reviewers need; names are unique; stack configs are valid; README lists all."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import pytest
from pulumi_policy import EnforcementLevel, ResourceValidationPolicy, Severity, StackValidationPolicy

from policies.rules import ALL_POLICIES, META, POLICIES_BY_NAME, load_pack_config, resolve
from policies.rules._config import CONFIG_DIR

README = Path(__file__).resolve().parents[2] / "policies" / "README.md"
STACK_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.json"))
KEBAB = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")


def test_names_are_unique_kebab_case_and_match_the_metadata_table() -> None:
    names = [p.name for p in ALL_POLICIES]
    assert len(names) == len(set(names))
    assert all(KEBAB.fullmatch(n) for n in names)
    assert set(names) == set(META)  # no orphan metadata row, no policy without one
    assert "all" not in names  # reserved by the engine


@pytest.mark.parametrize("p", ALL_POLICIES, ids=lambda p: p.name)
def test_policy_metadata_is_complete(p: ResourceValidationPolicy | StackValidationPolicy) -> None:
    assert len(p.description) > 40
    assert isinstance(p.severity, Severity)
    assert p.enforcement_level in (EnforcementLevel.ADVISORY, EnforcementLevel.MANDATORY)
    assert p.framework is not None and p.framework.name and p.framework.reference and p.framework.specification
    assert p.remediation_steps and len(p.remediation_steps) > 40
    assert p.url is not None and p.url.startswith("https://")
    assert p.display_name
    row = META[p.name]
    assert row.controls, "at least one framework control"
    assert all(c.framework and c.version and c.reference and c.title for c in row.controls)
    assert p.framework.reference == row.controls[0].reference  # the engine gets the first mapping
    if p.config_schema is not None:
        assert "enforcementLevel" not in p.config_schema.properties
        jsonschema.Draft7Validator.check_schema({"type": "object", "properties": p.config_schema.properties})


def test_required_concerns_are_covered() -> None:
    concerns = {row.concern for row in META.values()}
    assert concerns == {"isolation", "encryption", "kubernetes", "licensing", "gpu", "residency", "tagging", "sla",
                        "budget"}
    assert sum(isinstance(p, StackValidationPolicy) for p in ALL_POLICIES) >= 2  # budget and SLA gate at least


def test_every_framework_family_is_mapped_somewhere() -> None:
    frameworks = {c.framework for row in META.values() for c in row.controls}
    assert {"CIS Amazon EKS Benchmark", "SOC 2", "HIPAA Security Rule", "GDPR"} <= frameworks
    refs = {(c.framework, c.reference) for row in META.values() for c in row.controls}
    # The anchors the brief names, each on the policy it justifies.
    assert ("CIS Amazon EKS Benchmark", "5.4.2") in {(c.framework, c.reference)
                                                     for c in META["eks-endpoint-private"].controls}
    assert ("HIPAA Security Rule", "164.312(a)(2)(iv)") in refs and ("HIPAA Security Rule", "164.312(b)") in refs
    assert ("GDPR", "Art. 44") in {(c.framework, c.reference) for c in META["region-allowed"].controls}


@pytest.mark.parametrize("stack", STACK_CONFIGS)
def test_stack_config_files_are_valid(stack: str) -> None:
    config = load_pack_config(stack)
    for key, value in config.items():
        if key == "all":
            EnforcementLevel(value)
            continue
        assert key in POLICIES_BY_NAME, f"{stack}.json names an unknown policy {key!r}"
        p = POLICIES_BY_NAME[key]
        if isinstance(value, str):
            EnforcementLevel(value)
            continue
        props = {k: v for k, v in value.items() if k != "enforcementLevel"}
        if "enforcementLevel" in value:
            EnforcementLevel(value["enforcementLevel"])
        schema = p.config_schema.properties if p.config_schema else {}
        unknown = set(props) - set(schema)
        assert not unknown, f"{stack}.json: {key} has no setting(s) {sorted(unknown)}"  # the engine would ignore typos
        jsonschema.validate(props, {"type": "object", "properties": schema})


def test_the_three_stacks_exist() -> None:
    assert {"dev", "prod", "regulated"} <= set(STACK_CONFIGS)


def test_resolve_follows_the_engine_order() -> None:
    # defaults, then "all", then the named policy (pulumi/pulumi pkg/resource/analyzer/config.go).
    base = resolve(ALL_POLICIES, {})
    assert base["k8s-pdb-for-multi-replica"].enforcement == EnforcementLevel.ADVISORY
    assert base["log-retention-minimum"].config == {"minLogRetentionDays": 90}
    assert "budgetMonthlyUsd" not in base["monthly-budget"].config  # no default: unset means no check
    r = resolve(ALL_POLICIES, {"all": "disabled", "log-retention-minimum": {"minLogRetentionDays": 7},
                               "s3-tls-only": "advisory", "monthly-budget": {"enforcementLevel": "mandatory",
                                                                             "budgetMonthlyUsd": 5}})
    assert r["eks-endpoint-private"].enforcement == EnforcementLevel.DISABLED
    assert r["log-retention-minimum"] == type(r["log-retention-minimum"])(EnforcementLevel.DISABLED,
                                                                          {"minLogRetentionDays": 7})
    assert r["s3-tls-only"].enforcement == EnforcementLevel.ADVISORY
    assert r["monthly-budget"].enforcement == EnforcementLevel.MANDATORY
    assert r["monthly-budget"].config == {"budgetMonthlyUsd": 5}
    with pytest.raises(ValueError, match="not an enforcement level"):
        resolve(ALL_POLICIES, {"all": "strict"})


def test_prod_and_regulated_make_everything_mandatory() -> None:
    for stack in ("prod", "regulated"):
        assert {r.enforcement for r in resolve(ALL_POLICIES, load_pack_config(stack)).values()} == {
            EnforcementLevel.MANDATORY}


def test_readme_documents_every_policy() -> None:
    text = README.read_text(encoding="utf-8")
    rows = {line.split("|")[1].strip().strip("`"): line for line in text.splitlines()
            if line.startswith("| `") and line.count("|") > 5}
    assert set(rows) == set(POLICIES_BY_NAME)
    for name, line in rows.items():
        p = POLICIES_BY_NAME[name]
        assert p.severity is not None and p.severity.value in line
        assert p.enforcement_level is not None and p.enforcement_level.value in line
        for control in META[name].controls:
            assert control.reference in line, (name, control.reference)
        assert META[name].description in line and META[name].remediation in line  # generated from _meta.py
    assert "--policy-pack-config policies/config/prod.json" in text


def test_pack_config_files_are_plain_json_objects() -> None:
    for path in CONFIG_DIR.glob("*.json"):
        assert isinstance(json.loads(path.read_text()), dict)
