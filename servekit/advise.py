"""The field report's decision framework as explicit rules, each backed by the kit's own numbers.

The report's flowchart ("My Decision Framework"):

1. Can data leave your network? No -> self-host. Full stop.
2. Is the task well-constrained and structured? Yes -> an open model (even 8-14B); start with a
   managed endpoint.
3. Frontier-level reasoning or multi-turn coherence? Yes -> GPT-4o or Claude.
4. Over $10K/month of API spend for one use case? Yes -> build the business case for self-hosting.
5. Fine-tuning? Yes -> self-host, or a platform that deploys custom models.

Every rule is evaluated and reported; the recommendation is taken in this order of precedence:
rule 1 (a hard constraint), rule 3 (quality the open models do not reach), rule 5, rule 4, rule 2,
else the API. Where the report's claim can be checked (rule 4's spend threshold), the kit's TCO is
run at the volume and its verdict is stated beside the report's.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field

from servekit.catalog import Catalog, default_catalog
from servekit.cost import REFERENCE_API, api_prices, aws_prices
from servekit.spec import Frozen
from servekit.tco import DEFAULT_OPS_USD_PER_MONTH, DEFAULT_OUTPUT_TOKENS, TcoRequest, TcoResult, report_facts, tco

SELF_HOST_FIRST = ("llama-3.1-70b-instruct", "qwen2.5-72b-instruct")  # the report: "evaluate ... first"


class TaskKind(StrEnum):
    EXTRACTION = "extraction"  # structured, well-constrained (invoices to JSON)
    CLASSIFICATION = "classification"
    SUMMARIZATION = "summarization"
    CODE = "code"
    MULTI_TURN = "multi-turn"
    REASONING = "reasoning"

    @property
    def structured(self) -> bool:
        return self in (TaskKind.EXTRACTION, TaskKind.CLASSIFICATION)

    @property
    def frontier(self) -> bool:
        return self in (TaskKind.MULTI_TURN, TaskKind.REASONING)


class AdviceInput(Frozen):
    data_can_leave_network: bool | None = None
    task: TaskKind | None = None
    human_review: bool | None = None  # a person checks the output (the report: then 82% is "perfectly usable")
    monthly_api_usd: Annotated[float, Field(ge=0)] | None = None
    requests_per_day: Annotated[float, Field(gt=0)] | None = None
    input_tokens: Annotated[float, Field(ge=0)] = 0
    output_tokens: Annotated[int, Field(gt=0)] = DEFAULT_OUTPUT_TOKENS
    fine_tune: bool | None = None
    ops_usd_per_month: Annotated[float, Field(ge=0)] = DEFAULT_OPS_USD_PER_MONTH


Outcome = Literal["yes", "no", "unanswered"]


class RuleResult(Frozen):
    id: int
    question: str
    answer: Outcome
    points_to: str | None  # what the rule recommends when it fires
    evidence: list[str]


class Advice(Frozen):
    recommendation: str
    decided_by: int | None  # the rule that decided, None = the default
    reason: str
    rules: list[RuleResult]
    requests_per_day: float | None
    monthly_api_usd: float | None
    self_hosted_monthly_usd: float | None


def _yn(value: bool | None) -> Outcome:
    return "unanswered" if value is None else ("yes" if value else "no")


def _api_usd(result: TcoResult, option: str) -> float:
    return next(a.monthly_usd for a in result.apis if a.id == option)


def _volume(inp: AdviceInput) -> tuple[float | None, float | None]:
    """(requests/day, GPT-4o monthly USD): one given, the other derived at the request's tokens."""
    ref = api_prices().options[REFERENCE_API]
    per_req = ref.usd_per_request(inp.input_tokens, inp.output_tokens)
    days = aws_prices().hours / 24
    if inp.requests_per_day is not None:
        spend = inp.monthly_api_usd if inp.monthly_api_usd is not None else inp.requests_per_day * days * per_req
        return inp.requests_per_day, spend
    if inp.monthly_api_usd is not None:
        return (inp.monthly_api_usd / (days * per_req) if inp.monthly_api_usd > 0 else None), inp.monthly_api_usd
    return None, None


def advise(inp: AdviceInput, catalog: Catalog | None = None) -> Advice:
    cat = catalog or default_catalog()
    facts = report_facts()
    quality = facts.quality
    cross = facts.api_spend_crossover_usd_per_month
    volume, spend = _volume(inp)
    runs: dict[str, TcoResult] = {}

    def tco_for(model: str) -> TcoResult:
        if model not in runs:
            runs[model] = tco(TcoRequest(requests_per_day=volume or 1, input_tokens=inp.input_tokens,
                                         output_tokens=inp.output_tokens, model=model,
                                         ops_usd_per_month=inp.ops_usd_per_month), cat)
        return runs[model]

    rules: list[RuleResult] = []

    # 1. data leaving the network
    ev1 = []
    if inp.data_can_leave_network is False:
        for m in SELF_HOST_FIRST:
            r = tco_for(m)
            sh = r.self_hosted
            ev1.append(f"{m}: {sh.replicas} x {sh.instance_type} (TP {sh.tensor_parallel_size}) "
                       f"${sh.monthly_usd:,.0f}/month incl. ${sh.ops_usd_per_month:,.0f} ops"
                       + (f" at {volume:,.0f} requests/day" if volume else " (smallest deployment)"))
        ev1.append("run `servekit plan --stack regulated` for a no-egress deployment")
    rules.append(RuleResult(id=1, question="Can data leave your network?", answer=_yn(inp.data_can_leave_network),
                            points_to="self-host (full stop)" if inp.data_can_leave_network is False else None,
                            evidence=ev1))

    # 2. structured task
    structured = None if inp.task is None else inp.task.structured
    ev2 = []
    if structured:
        ex = quality["extraction"]
        ev2.append(f"report, extraction: Llama 3.1 70B {ex['llama-3.1-70b']:g}% vs GPT-4o {ex['gpt-4o']:g}%, "
                   f"Phi-3.5 14B {ex['phi-3.5-14b']:g}%")
        endpoint = api_prices().options["managed-open"]
        ev2.append(f"managed endpoint {endpoint.price_text()}"
                   + (f": ${_api_usd(tco_for('llama-3.1-70b-instruct'), 'managed-open'):,.0f}/month at this volume"
                      if volume else ""))
    rules.append(RuleResult(id=2, question="Is the task well-constrained and structured?", answer=_yn(structured),
                            points_to="open model (8-14B may do); start with a managed endpoint" if structured
                            else None, evidence=ev2))

    # 3. frontier reasoning / multi-turn
    frontier: bool | None = None
    ev3: list[str] = []
    if inp.task is not None:
        frontier = inp.task.frontier
        if inp.task in (TaskKind.SUMMARIZATION, TaskKind.CODE):
            q = quality[inp.task.value]
            best_api = max(float(q["gpt-4o"]), float(q.get("claude-3.5-sonnet", 0)))
            best_open = max(float(v) for k, v in q.items() if k not in ("gpt-4o", "claude-3.5-sonnet"))
            ev3.append(f"report, {inp.task.value}: best API {best_api:g}% vs best open {best_open:g}% "
                       f"({best_api - best_open:g} points)")
            if inp.human_review is False:
                frontier = True
                ev3.append("no human reviews the output: the report says the gap then 'matters a lot'")
            else:
                ev3.append("with a human reviewing the output the report calls the open model 'perfectly usable'"
                           if inp.human_review else "say --human-review / --no-human-review to settle it")
        elif inp.task is TaskKind.MULTI_TURN:
            ev3.append(f"report: {quality['multi-turn']['note']}")
        elif inp.task is TaskKind.REASONING:
            ev3.append("report: frontier models remain ahead on 'general intelligence, nuanced reasoning, or "
                       "long-context coherence'")
    rules.append(RuleResult(id=3, question="Do you need frontier-level reasoning or multi-turn coherence?",
                            answer=_yn(frontier), points_to="GPT-4o or Claude 3.5 Sonnet API" if frontier else None,
                            evidence=ev3))

    # 4. API spend
    over: bool | None = None if spend is None else spend > cross.decision
    ev4: list[str] = []
    hosted_usd: float | None = None
    kit_agrees: bool | None = None
    if spend is not None:
        ev4.append(f"API spend ${spend:,.0f}/month" + (f" (= {volume:,.0f} requests/day x {inp.input_tokens:,.0f} in "
                                                      f"+ {inp.output_tokens} out tokens at GPT-4o prices)"
                                                      if volume else ""))
        ev4.append(f"report: crossover ${cross.low:,.0f}-${cross.high:,.0f}/month; threshold ${cross.decision:,.0f}")
    if spend and volume:
        r = tco_for("llama-3.1-70b-instruct")
        hosted_usd = r.self_hosted.monthly_usd
        kit_agrees = hosted_usd < spend
        be = next(b for b in r.break_even if b.against == REFERENCE_API)
        ev4.append(f"kit: self-hosting Llama 3.1 70B costs ${hosted_usd:,.0f}/month at this volume "
                   f"({r.self_hosted.replicas} x {r.self_hosted.instance_type}, ops ${inp.ops_usd_per_month:,.0f})")
        ev4.append(f"kit break-even vs GPT-4o: {be.note}")
    rules.append(RuleResult(id=4, question=f"Are you spending over ${cross.decision:,.0f}/month on API calls for "
                            "one use case?", answer=_yn(over),
                            points_to="build the business case for self-hosting" if over else None, evidence=ev4))

    # 5. fine-tuning
    ev5 = ["the report: LoRA first; API fine-tuning gives less control and locks you in"] if inp.fine_tune else []
    rules.append(RuleResult(id=5, question="Do you need to fine-tune?", answer=_yn(inp.fine_tune),
                            points_to="self-host, or a managed platform that deploys custom models"
                            if inp.fine_tune else None, evidence=ev5))

    by_id = {r.id: r for r in rules}
    if by_id[1].answer == "no":
        rec, decided, why = "self-host", 1, "data may not leave your network; nothing else matters"
    elif by_id[3].answer == "yes":
        rec, decided, why = "frontier API (GPT-4o or Claude 3.5 Sonnet)", 3, "the quality gap still matters here"
    elif by_id[5].answer == "yes":
        cheaper = kit_agrees if kit_agrees is not None else bool(over)
        rec = "self-host (fine-tuned)" if cheaper else "managed platform with custom-model deployment"
        decided = 5
        why = ("fine-tuning needs the weights; " + ("self-hosting is the cheaper way at this volume" if cheaper else
               "below the spend threshold a managed custom deployment avoids the ops cost"))
    elif by_id[4].answer == "yes":
        decided = 4
        managed_usd = _api_usd(tco_for("llama-3.1-70b-instruct"), "managed-open") if volume else None
        if structured and managed_usd is not None and hosted_usd is not None and managed_usd < hosted_usd:
            rec = "managed open-model endpoint"
            why = (f"API spend is past the report's threshold, but for a structured task the kit prices the managed "
                   f"endpoint at ${managed_usd:,.0f}/month against ${hosted_usd:,.0f} for self-hosting")
        elif kit_agrees is False:
            rec = "stay on the API for now"
            why = (f"the report's threshold is passed, but the kit prices self-hosting at ${hosted_usd:,.0f}/month "
                   f"against ${spend:,.0f} of API spend")
        else:
            rec = "self-host"
            why = ("API spend is past the report's threshold" + (
                f" and the kit's self-hosting estimate (${hosted_usd:,.0f}/month) is below it" if hosted_usd else
                "; give --requests-per-day to check it against the kit's own estimate"))
    elif by_id[2].answer == "yes":
        rec, decided, why = "managed open-model endpoint", 2, "open models match the API on structured tasks"
    else:
        rec, decided, why = "API", None, "no rule points away from the per-token API"
    return Advice(recommendation=rec, decided_by=decided, reason=why, rules=rules, requests_per_day=volume,
                  monthly_api_usd=spend, self_hosted_monthly_usd=hosted_usd)
