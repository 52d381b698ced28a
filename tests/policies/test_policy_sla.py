"""Specs for policies/rules/sla.py: an SLA gate Job on stacks that must verify their SLA."""

from __future__ import annotations

from copy import deepcopy

import pytest
from fixtures import GOOD, evaluate, policy, run, stack_args, violated

NAME = "sla-gate-required"


@pytest.mark.parametrize("kind", ["prod", "regulated"])
def test_missing_gate(kind: str) -> None:
    s = deepcopy(GOOD[kind])
    del s["sla-gate"]
    [v] = evaluate(s, kind)
    assert v.policy == NAME and v.resource == ""  # a stack-level finding


def test_dev_does_not_need_one() -> None:
    assert "sla-gate" not in GOOD["dev"]
    assert violated(GOOD["dev"], "dev") == set()


def test_job_without_the_gate_label_does_not_count() -> None:
    s = deepcopy(GOOD["prod"])
    s["sla-gate"].props["metadata"]["labels"] = {"app": "loadtest"}
    assert violated(s, "prod") == {NAME}


def test_cron_job_gate_counts() -> None:
    s = deepcopy(GOOD["prod"])
    job = s["sla-gate"]
    job.type = "kubernetes:batch/v1:CronJob"
    job.props["spec"] = {"schedule": "0 * * * *", "jobTemplate": {"spec": job.props["spec"]}}
    assert violated(s, "prod") == set()


@pytest.mark.parametrize(("config", "expected"), [
    ({"environment": "prod"}, 1), ({"environment": "dev"}, 0), ({"environment": "dev", "requireSlaGate": True}, 1),
    ({"environment": "prod", "requireSlaGate": False}, 0), ({}, 0),
])
def test_environment_decides_by_default(config: dict[str, object], expected: int) -> None:
    s = deepcopy(GOOD["prod"])
    del s["sla-gate"]
    assert len(run(policy(NAME), stack_args(s, config=config))) == expected


def test_nothing_served_nothing_to_gate() -> None:
    s = {k: r for k, r in GOOD["prod"].items() if not r.type.startswith("kubernetes:")}
    assert run(policy(NAME), stack_args(s, config={"environment": "prod"})) == []
