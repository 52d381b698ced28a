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


def test_tag_copies_on_launch_templates_are_not_counted_twice() -> None:
    # The kit copies a node group's tags onto its launch template (so instances carry them); the
    # budget counts node groups only. 2 x 2,500 would exceed dev's 3,000; 2,500 once does not.
    s = deepcopy(GOOD["dev"])
    s["gpu-chat"].props["tags"]["servekit:monthly-cost-usd"] = "2500"
    s["node-template"].props["tags"] = dict(s["gpu-chat"].props["tags"])
    assert violated(s, "dev") == set()
    s["gpu-chat"].props["tags"]["servekit:monthly-cost-usd"] = "3000.01"
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
