"""Specs for policies/rules/licensing.py: the licence allowlist and the servekit.io/* facts on serving workloads."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import pytest
from fixtures import GOOD, Stack, evaluate, policy, resource_args, run, violated
from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, UnknownValueError

DEPLOYMENT = "kubernetes:apps/v1:Deployment"


def facts(s: Stack, name: str) -> dict[str, Any]:
    ann: dict[str, Any] = s[f"{name}-deployment"].props["metadata"]["annotations"]
    return ann


def serve_non_commercial(s: Stack, name: str) -> None:
    """Swap the served model for Command R+ (CC-BY-NC-4.0, models/command-r-plus.yaml)."""
    s[f"{name}-deployment"].props["metadata"]["labels"]["servekit.io/model"] = "command-r-plus"
    facts(s, name).update({"servekit.io/license": "CC-BY-NC-4.0", "servekit.io/commercial-use": "false"})


class TestModelLicenseAllowed:
    name = "model-license-allowed"

    def test_non_commercial_model_refused_in_prod(self) -> None:
        s = deepcopy(GOOD["prod"])
        serve_non_commercial(s, "contracts")
        found = evaluate(s, "prod")
        assert {(v.policy, v.resource) for v in found} == {(self.name, "contracts-deployment")}
        assert any("CC-BY-NC-4.0" in v.message for v in found)  # not on prod's allowlist
        assert any("commercially" in v.message for v in found)  # and commercialOnly

    def test_same_model_allowed_for_evaluation_in_dev(self) -> None:
        s = deepcopy(GOOD["dev"])
        serve_non_commercial(s, "chat")
        assert violated(s, "dev") == set()

    def test_commercial_use_label_cannot_contradict_the_licence(self) -> None:
        s = deepcopy(GOOD["dev"])
        serve_non_commercial(s, "chat")
        facts(s, "chat")["servekit.io/commercial-use"] = "true"
        [v] = evaluate(s, "dev")
        assert v.policy == self.name and "non-commercial" in v.message

    def test_llama_allowed_in_prod_but_not_regulated(self) -> None:
        assert facts(GOOD["prod"], "contracts")["servekit.io/license"] == "llama3.1"
        s = deepcopy(GOOD["regulated"])
        facts(s, "notes")["servekit.io/license"] = "llama3.1"
        assert violated(s, "regulated") == {self.name}

    def test_missing_licence(self) -> None:
        s = deepcopy(GOOD["prod"])
        del facts(s, "contracts")["servekit.io/license"]
        assert violated(s, "prod") == {self.name, "serving-workload-labels"}

    @pytest.mark.parametrize(("config", "expected"), [
        ({"environment": "prod", "allowedLicenses": ["CC-BY-NC-4.0"]}, 1),  # prod implies commercialOnly
        ({"environment": "dev", "allowedLicenses": ["CC-BY-NC-4.0"]}, 0),
        ({"environment": "prod", "commercialOnly": False, "allowedLicenses": ["CC-BY-NC-4.0"]}, 0),
        ({"allowedLicenses": ["cc-by-nc-4.0"]}, 0),  # licence ids compare case-insensitively
    ])
    def test_environment_sets_the_commercial_default(self, config: dict[str, Any], expected: int) -> None:
        s = deepcopy(GOOD["dev"])
        serve_non_commercial(s, "chat")
        assert len(run(policy(self.name), resource_args(DEPLOYMENT, s["chat-deployment"].props, config))) == expected

    def test_facts_may_sit_on_the_pod_template(self) -> None:
        s = deepcopy(GOOD["prod"])
        ann = s["contracts-deployment"].props["metadata"].pop("annotations")
        s["contracts-deployment"].props["spec"]["template"]["metadata"]["annotations"] = ann
        assert violated(s, "prod") == set()

    def test_unknown_licence_defers(self) -> None:
        s = deepcopy(GOOD["prod"])
        facts(s, "contracts")["servekit.io/license"] = UNKNOWN_STRING_VALUE
        with pytest.raises(UnknownValueError):
            run(policy(self.name), resource_args(DEPLOYMENT, s["contracts-deployment"].props, {"environment": "prod"}))

    def test_only_serving_workloads(self) -> None:
        assert run(policy(self.name), resource_args("kubernetes:batch/v1:Job", GOOD["prod"]["sla-gate"].props)) == []


class TestServingWorkloadLabels:
    name = "serving-workload-labels"

    @pytest.mark.parametrize("key", ["servekit.io/commercial-use", "servekit.io/data-classification",
                                     "servekit.io/sla-p95-seconds"])
    def test_missing_fact(self, key: str) -> None:
        s = deepcopy(GOOD["dev"])
        del facts(s, "chat")[key]
        [v] = evaluate(s, "dev")
        assert v.policy == self.name and key in v.message

    @pytest.mark.parametrize(("key", "value"), [
        ("servekit.io/commercial-use", "yes"),  # in prod this also fails model-license-allowed (commercialOnly)
        ("servekit.io/sla-p95-seconds", "fast"),
        ("servekit.io/sla-p95-seconds", "0"),
        ("servekit.io/data-classification", "confidential"),  # dev serves public/internal data only
    ])
    def test_bad_value(self, key: str, value: str) -> None:
        s = deepcopy(GOOD["dev"])
        facts(s, "chat")[key] = value
        [v] = evaluate(s, "dev")
        assert v.policy == self.name and repr(value) in v.message
