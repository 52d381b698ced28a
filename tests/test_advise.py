"""The decision framework: each rule fires on its answer, precedence follows the report, and rule 4's
verdict follows the kit's own TCO (not just the report's $10K threshold).

Volumes are chosen so the kit's numbers fall clearly on one side: 1M requests/day with 1,000 input
tokens is a $228K/month GPT-4o bill (1M x 30.42 days x (1000 x $2.5 + 500 x $10) / 1M); 92K requests/day
of 500 output tokens is $14K/month, below the ~$18.4K the kit prices one on-demand p4d node plus ops at.
"""

from __future__ import annotations

import json

import pytest

from servekit.advise import AdviceInput, TaskKind, advise
from servekit.cli import app
from servekit.cli._common import run_app


def test_data_that_cannot_leave_decides_alone() -> None:
    a = advise(AdviceInput(data_can_leave_network=False, task=TaskKind.REASONING, monthly_api_usd=500))
    assert (a.recommendation, a.decided_by) == ("self-host", 1)
    rule1 = a.rules[0]
    assert rule1.answer == "no" and any("llama-3.1-70b-instruct" in e for e in rule1.evidence)


def test_frontier_tasks_go_to_the_api() -> None:
    a = advise(AdviceInput(data_can_leave_network=True, task=TaskKind.MULTI_TURN))
    assert a.decided_by == 3 and a.recommendation.startswith("frontier API")
    # summarization without human review: the report's 9-point gap "matters a lot"
    b = advise(AdviceInput(data_can_leave_network=True, task=TaskKind.SUMMARIZATION, human_review=False))
    assert b.decided_by == 3 and any("(9 points)" in e for e in b.rules[2].evidence)  # 91% vs 82%
    c = advise(AdviceInput(data_can_leave_network=True, task=TaskKind.SUMMARIZATION, human_review=True))
    assert c.decided_by is None and c.recommendation == "API"


def test_structured_task_starts_on_a_managed_endpoint() -> None:
    a = advise(AdviceInput(data_can_leave_network=True, task=TaskKind.EXTRACTION))
    assert (a.recommendation, a.decided_by) == ("managed open-model endpoint", 2)
    assert any("94% vs GPT-4o 95%" in e for e in a.rules[1].evidence)


def test_spend_rule_follows_the_kits_numbers() -> None:
    big = advise(AdviceInput(data_can_leave_network=True, task=TaskKind.CODE, human_review=True,
                             requests_per_day=1_000_000, input_tokens=1000))
    assert big.monthly_api_usd == pytest.approx(1_000_000 * 730 / 24 * (1000 * 2.5 + 500 * 10) / 1e6)
    assert big.decided_by == 4 and big.recommendation == "self-host"
    assert big.self_hosted_monthly_usd is not None and big.monthly_api_usd is not None
    assert big.self_hosted_monthly_usd < big.monthly_api_usd
    small = advise(AdviceInput(data_can_leave_network=True, monthly_api_usd=14_000))
    assert small.rules[3].answer == "yes"  # past the report's $10K threshold ...
    assert small.recommendation == "stay on the API for now"  # ... but the kit's self-hosting costs more
    structured = advise(AdviceInput(data_can_leave_network=True, task=TaskKind.EXTRACTION,
                                    requests_per_day=1_000_000, input_tokens=1000))
    assert structured.recommendation == "managed open-model endpoint" and structured.decided_by == 4


def test_unanswered_questions_are_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(app, ["advise", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["answer"] for r in out["rules"]] == ["unanswered"] * 5
    assert out["recommendation"] == "API"
    assert run_app(app, ["advise", "--data-cannot-leave", "--task", "extraction", "--fine-tune"]) == 0
    assert "Recommendation (rule 1): self-host" in capsys.readouterr().out


@pytest.mark.parametrize("option", ["--monthly-api-usd", "--requests-per-day", "--ops-usd-per-month"])
def test_cli_infinity_is_exit_2(option: str, capsys: pytest.CaptureFixture[str]) -> None:
    # 'inf' passes a lower-bounded option; it crashed the TCO (OverflowError) or printed Infinity as "JSON".
    code = run_app(app, ["advise", "--requests-per-day", "1000", option, "inf", "--json"])
    out, err = capsys.readouterr()
    assert code == 2 and out == "" and "Traceback" not in err
    assert err.startswith(f"error: {option}: must be a finite number (given: inf)")
