"""Specs for policies/rules/budget.py: estimated monthly cost from servekit:monthly-cost-usd tags within budget."""

from __future__ import annotations

from copy import deepcopy

from fixtures import GOOD, evaluate, policy, run, stack_args, violated

NAME = "monthly-budget"


def test_over_budget() -> None:
    s = deepcopy(GOOD["prod"])  # 28,000 + 7,000 today; prod's budget is 60,000
    s["gpu-contracts"].props["tags"]["servekit:monthly-cost-usd"] = "55000"
    [v] = evaluate(s, "prod")
    assert v.policy == NAME and "$62,000" in v.message and "$60,000" in v.message
    assert v.message.index("gpu-contracts") < v.message.index("gpu-extract")  # biggest first


def test_exactly_at_budget_passes() -> None:
    s = deepcopy(GOOD["prod"])
    s["gpu-contracts"].props["tags"]["servekit:monthly-cost-usd"] = "53000.00"
    assert violated(s, "prod") == set()


def test_costs_on_other_resources_count() -> None:
    s = deepcopy(GOOD["dev"])  # 587.50 on the GPU group; dev's budget is 3,000
    s["nat"].props["tags"] = {"servekit:monthly-cost-usd": "2500"}
    assert violated(s, "dev") == {NAME}


def test_gpu_group_without_estimate() -> None:
    s = deepcopy(GOOD["prod"])
    del s["gpu-extract"].props["tags"]["servekit:monthly-cost-usd"]
    assert violated(s, "prod") == {NAME, "gpu-nodegroup-cost-tags"}


def test_no_budget_configured() -> None:
    s = deepcopy(GOOD["prod"])
    s["gpu-contracts"].props["tags"]["servekit:monthly-cost-usd"] = "9999999"
    assert run(policy(NAME), stack_args(s, config={})) == []
    assert len(run(policy(NAME), stack_args(s, config={"budgetMonthlyUsd": 1000.0}))) == 1
