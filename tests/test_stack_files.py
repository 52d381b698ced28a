"""The repository's stack files: each loads, places and agrees with its policy config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from servekit.catalog import REPO_ROOT
from servekit.stackfile import available_stacks, load_stack

STACKS = available_stacks()


def test_the_three_promised_stacks_exist() -> None:
    assert {"dev", "prod", "regulated"} <= set(STACKS)


@pytest.mark.parametrize("stack", STACKS)
def test_budget_has_one_value(stack: str) -> None:
    # The budget is written twice (the stack file for `servekit cost`, the policy config for
    # `pulumi preview --policy-pack`); they must not drift apart.
    spec = load_stack(stack)
    config = json.loads(Path(REPO_ROOT / "policies" / "config" / f"{stack}.json").read_text())
    assert config["monthly-budget"]["budgetMonthlyUsd"] == spec.budget_monthly_usd
