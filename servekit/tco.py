"""Total cost of ownership: self-hosting on the kit's own placement against per-token APIs.

For a volume (requests/day, input and output tokens per request) ``tco`` prices:

- each per-token option in ``data/prices-api.yaml`` (GPT-4o, Claude 3.5 Sonnet, a managed open-model
  endpoint): requests x tokens x price, over a month of ``hoursPerMonth / 24`` days;
- self-hosting: the sizing engine's feasible (instance type, TP) candidates for the model and SLA,
  each re-estimated at this request shape, sized for the volume - Little's law gives the peak
  concurrency = average request rate x peak-to-average ratio x mean request duration, and
  replicas = ceil(peak concurrency / SLA batch) - then priced as a stack (GPU node group at the
  purchase option, the fixed AWS lines) plus the ops overhead, an explicit input. The cheapest
  candidate wins.

The break-even volume is the smallest requests/day at which self-hosting costs no more than an
option; the self-hosting cost is a step function of volume (whole replicas, whole nodes), so it is
found interval by interval, not by a formula.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path
from typing import Annotated

from pydantic import Field

from servekit.catalog import Catalog, default_catalog, read_yaml, validate_file
from servekit.cost import ApiOption, api_prices, aws_prices, stack_cost
from servekit.errors import CheckFailed, UserError
from servekit.sizing import (
    DEFAULT_MAX_CONTEXT,
    Candidate,
    Placement,
    place,
)
from servekit.spec import (
    DeploymentSpec,
    Egress,
    Frozen,
    KvCacheDtype,
    ModelDeployment,
    PurchaseOption,
    Quantization,
    Source,
    WorkloadProfile,
)
from servekit.workloads import Z95, TokenShape, profile

REPORT_FILE = Path(__file__).parent / "data" / "prices-field-report.yaml"

# Stated assumption: interactive internal tools see about twice their daily-average request rate
# in the busy hours (traffic concentrated in ~12 of 24 hours). Replicas are sized for that peak, so
# the average utilization of a right-sized fleet is about 1 / 2 (cost.DEFAULT_UTILIZATION).
PEAK_TO_AVERAGE = 2.0
MAX_REPLICAS = 64  # ModelDeployment.replicas' limit: beyond it, split the volume over stacks
DEFAULT_MODEL = "llama-3.1-70b-instruct"  # the report's workhorse
DEFAULT_OUTPUT_TOKENS = 500  # the report's "~500 tokens avg output"
DEFAULT_CONCURRENCY = 32  # the report: "p95 under 3 s caps our effective batch at around 32 per replica"
# The report's 3 s p95 is not reachable for 500-token answers from a 70B model on any catalog GPU at
# batch 32 (the roofline predicts ~5 s on 8x H200); 30 s is servekit's default for long answers.
DEFAULT_P95_SECONDS = 30.0
DEFAULT_OPS_USD_PER_MONTH = 2000.0  # the report: "at least $2,000/month equivalent in engineering time"


class TcoRequest(Frozen):
    """A volume and how to self-host it."""

    requests_per_day: Annotated[float, Field(gt=0)]
    input_tokens: Annotated[float, Field(ge=0)]
    output_tokens: Annotated[int, Field(gt=0)] = DEFAULT_OUTPUT_TOKENS
    model: str = DEFAULT_MODEL
    quantization: Quantization = Quantization.BF16
    kv_cache_dtype: KvCacheDtype = KvCacheDtype.AUTO
    gpus: list[str] | None = None
    concurrency: Annotated[int, Field(ge=1, le=1024)] = DEFAULT_CONCURRENCY
    p95_seconds: Annotated[float, Field(gt=0)] = DEFAULT_P95_SECONDS
    workload: WorkloadProfile = WorkloadProfile.CHAT
    purchase: PurchaseOption = PurchaseOption.ON_DEMAND
    region: str = "us-east-1"
    ops_usd_per_month: Annotated[float, Field(ge=0)] = DEFAULT_OPS_USD_PER_MONTH
    peak_to_average: Annotated[float, Field(ge=1)] = PEAK_TO_AVERAGE
    min_replicas: Annotated[int, Field(ge=1, le=MAX_REPLICAS)] = 1
    az_count: Annotated[int, Field(ge=2, le=6)] = 3
    egress: Egress = Egress.NAT

    @property
    def days_per_month(self) -> float:
        return aws_prices().hours / 24


def request_shape(req: TcoRequest) -> TokenShape:
    """The request's token shape: its mean input and output, with the workload profile's prompt spread."""
    base = profile(req.workload)
    mean_in = max(req.input_tokens, 1.0)
    median = mean_in / math.exp(base.sigma**2 / 2)
    return TokenShape(prompt_median_tokens=max(1, round(median)),
                      prompt_p95_tokens=max(1, round(median * math.exp(base.sigma * Z95))),
                      output_tokens=req.output_tokens)


class ApiCost(Frozen):
    id: str
    name: str
    kind: str
    monthly_usd: float
    usd_per_request: float
    basis: str


def api_cost(option_id: str, option: ApiOption, req: TcoRequest) -> ApiCost:
    per_req = option.usd_per_request(req.input_tokens, req.output_tokens)
    days = req.days_per_month
    monthly = per_req * req.requests_per_day * days
    return ApiCost(id=option_id, name=option.name, kind=option.kind, monthly_usd=monthly, usd_per_request=per_req,
                   basis=f"{req.requests_per_day:,.0f} req/day x {days:.2f} days x ({req.input_tokens:,.0f} in + "
                         f"{req.output_tokens:,} out tokens) at {option.price_text()}")


class SelfHostCandidate(Frozen):
    """One (instance type, TP) sized for the volume at this request shape."""

    instance_type: str
    gpu_type: str
    tensor_parallel_size: int
    feasible: bool
    reason: str
    mean_seconds: float | None = None
    p95_seconds: float | None = None
    requests_per_day_per_replica: float | None = None  # at the peak, sized with the SLA batch


class SelfHosted(Frozen):
    model: str
    quantization: Quantization
    instance_type: str
    gpu_type: str
    tensor_parallel_size: int
    replicas: int
    nodes: int
    purchase: PurchaseOption
    mean_seconds: float  # at this request shape, at the SLA batch
    p95_seconds: float
    output_tokens_per_second_per_replica: float
    peak_concurrency: float
    average_utilization: float
    gpu_monthly_usd: float
    fixed_monthly_usd: float
    ops_usd_per_month: float
    monthly_usd: float
    usd_per_million_output_tokens: float
    basis: list[str]


class BreakEven(Frozen):
    against: str
    requests_per_day: float | None  # None: self-hosting never costs less within MAX_REPLICAS replicas
    api_monthly_usd: float | None  # the option's bill at that volume
    note: str


class TcoResult(Frozen):
    request: TcoRequest
    apis: list[ApiCost]
    self_hosted: SelfHosted
    cheapest: str
    break_even: list[BreakEven]
    assumptions: list[str]
    rejected: list[SelfHostCandidate]


# --------------------------------------------------------------------------- self-hosting


class _Sizer:
    """The feasible candidates for a request, and their cost at any replica count (cached)."""

    def __init__(self, req: TcoRequest, catalog: Catalog) -> None:
        from servekit.sizing import candidates

        self.req = req
        self.catalog = catalog
        self.model = catalog.model(req.model)
        limit = self.model.architecture.max_position_embeddings
        if req.input_tokens + req.output_tokens > limit:  # no deployment of the model can serve such a request
            raise UserError(f"input + output tokens ({req.output_tokens:,}) per request exceed {self.model.id}'s "
                            "context", path="--input-tokens", given=req.input_tokens,
                            allowed=f"input + output tokens at most {limit:,}")
        # The context must hold the request itself: long prompts need their KV cache, not the default 8k.
        context = min(limit, max(DEFAULT_MAX_CONTEXT, math.ceil(req.input_tokens + req.output_tokens)))
        self.dep = ModelDeployment.model_validate({
            "name": "tco", "model": req.model, "quantization": req.quantization, "kvCacheDtype": req.kv_cache_dtype,
            "maxContext": context,
            "gpus": req.gpus, "replicas": 1, "purchase": {"option": req.purchase},
            "sla": {"p95E2eSeconds": req.p95_seconds, "concurrencyPerReplica": req.concurrency,
                    "workload": req.workload},
        })
        self.shape = request_shape(req)
        self.rows: list[SelfHostCandidate] = []
        self.usable: list[SelfHostCandidate] = []
        self._cost: dict[tuple[str, int, int], tuple[float, Placement, float]] = {}
        for c in candidates(self.dep, catalog, shape=self.shape):
            row = self._at_shape(c)
            self.rows.append(row)
            if row.feasible:
                self.usable.append(row)

    def _at_shape(self, c: Candidate) -> SelfHostCandidate:
        """The sizing engine's verdict at the request's shape, plus the volume one replica carries."""
        base = {"instance_type": c.instance_type, "gpu_type": c.gpu_type,
                "tensor_parallel_size": c.tensor_parallel_size}
        more = {"mean_seconds": c.latency.mean_e2e_seconds, "p95_seconds": c.latency.p95_e2e_seconds} \
            if c.latency else {}
        if not c.feasible or c.latency is None:
            return SelfHostCandidate(feasible=False, reason=c.reason, **base, **more)
        # Little's law at the peak: concurrency = rate x duration; one replica holds `batch` of it.
        per_replica = self.req.concurrency / (self.req.peak_to_average * c.latency.mean_e2e_seconds) * 86400
        return SelfHostCandidate(feasible=True, reason="fits", requests_per_day_per_replica=per_replica,
                                 **base, **more)

    def replicas_for(self, c: SelfHostCandidate, requests_per_day: float) -> int:
        assert c.requests_per_day_per_replica is not None
        return max(self.req.min_replicas, math.ceil(requests_per_day / c.requests_per_day_per_replica - 1e-9))

    def cost(self, c: SelfHostCandidate, replicas: int) -> tuple[float, Placement, float]:
        """(total monthly USD incl. ops, the placement, GPU node-group monthly USD) at ``replicas``."""
        key = (c.instance_type, c.tensor_parallel_size, replicas)
        if key not in self._cost:
            dep = self.dep.model_copy(update={"replicas": replicas, "instance_type": c.instance_type,
                                              "tensor_parallel_size": c.tensor_parallel_size})
            placement = place(dep, self.catalog, shape=self.shape)
            spec = _spec(self.req, dep)
            sc = stack_cost(spec, [placement], catalog=self.catalog)
            gpu = sum(line.monthly_usd for line in sc.lines if line.kind == "node-group")
            self._cost[key] = (sc.monthly_usd + self.req.ops_usd_per_month, placement, gpu)
        return self._cost[key]

    def best(self, requests_per_day: float) -> tuple[SelfHostCandidate, int, float] | None:
        """The cheapest usable candidate at a volume, its replicas and total monthly USD."""
        best: tuple[SelfHostCandidate, int, float] | None = None
        for c in self.usable:
            r = self.replicas_for(c, requests_per_day)
            if r > MAX_REPLICAS:
                continue
            total = self.cost(c, r)[0]
            if best is None or total < best[2] - 1e-9 or (
                    abs(total - best[2]) <= 1e-9 and (c.p95_seconds or 0) < (best[0].p95_seconds or 0)):
                best = (c, r, total)
        return best


def _spec(req: TcoRequest, dep: ModelDeployment) -> DeploymentSpec:
    """A one-model stack to price the fixed lines; without egress the weights come from the model store."""
    model = dep.model_dump(by_alias=True, mode="json", exclude_none=True)
    if req.egress is Egress.NONE:
        model["source"] = "s3"
    return DeploymentSpec.model_validate({
        "stack": "tco", "region": req.region, "environment": "prod",
        "tags": {"owner": "tco", "costCenter": "tco", "dataClassification": "internal"},
        "network": {"azCount": req.az_count, "egress": req.egress.value}, "models": [model],
    })


def _self_hosted(sizer: _Sizer, req: TcoRequest) -> SelfHosted:
    found = sizer.best(req.requests_per_day)
    if found is None:
        reasons = sorted({r.reason for r in sizer.rows if not r.feasible})
        most = max((c.requests_per_day_per_replica or 0) * MAX_REPLICAS for c in sizer.usable) if sizer.usable else 0
        raise CheckFailed(
            f"cannot self-host {req.requests_per_day:,.0f} requests/day of {req.model}: "
            + (f"at most {most:,.0f}/day fit in {MAX_REPLICAS} replicas" if sizer.usable else
               "no instance type meets the SLA at this request shape: " + "; ".join(reasons[:3])))
    c, replicas, total = found
    _, placement, gpu = sizer.cost(c, replicas)
    assert c.mean_seconds is not None and c.p95_seconds is not None
    batch = req.concurrency
    peak = req.requests_per_day / 86400 * req.peak_to_average * c.mean_seconds
    avg_util = peak / req.peak_to_average / (replicas * batch)
    fixed = total - gpu - req.ops_usd_per_month
    tokens_month = req.requests_per_day * req.days_per_month * req.output_tokens
    return SelfHosted(
        model=req.model, quantization=req.quantization, instance_type=c.instance_type, gpu_type=c.gpu_type,
        tensor_parallel_size=c.tensor_parallel_size, replicas=replicas, nodes=placement.nodes, purchase=req.purchase,
        mean_seconds=c.mean_seconds, p95_seconds=c.p95_seconds,
        output_tokens_per_second_per_replica=batch * req.output_tokens / c.mean_seconds,
        peak_concurrency=peak, average_utilization=avg_util, gpu_monthly_usd=gpu, fixed_monthly_usd=fixed,
        ops_usd_per_month=req.ops_usd_per_month, monthly_usd=total,
        usd_per_million_output_tokens=total / tokens_month * 1e6,
        basis=[
            f"peak concurrency = {req.requests_per_day:,.0f}/86,400 req/s x {req.peak_to_average:g} peak/average x "
            f"{c.mean_seconds:.2f} s mean request = {peak:,.1f}; replicas = max({req.min_replicas}, "
            f"ceil({peak:,.1f} / batch {batch})) = {replicas}",
            f"{replicas} x TP {c.tensor_parallel_size} on {placement.nodes} x {c.instance_type} "
            f"({req.purchase.value}): ${gpu:,.0f}/month; fixed AWS lines ${fixed:,.0f}; ops "
            f"${req.ops_usd_per_month:,.0f}",
            f"predicted at batch {batch} for {req.input_tokens:,.0f} in / {req.output_tokens} out tokens: mean "
            f"{c.mean_seconds:.1f} s, p95 {c.p95_seconds:.1f} s (SLA {req.p95_seconds:g} s)",
        ],
    )


def _break_even(sizer: _Sizer, api: ApiCost, req: TcoRequest) -> BreakEven:
    """Smallest requests/day where self-hosting (a step function of volume) costs no more than ``api``."""
    per_request_day = api.usd_per_request * req.days_per_month  # the API's monthly USD per request/day
    points = sorted({(c.requests_per_day_per_replica or 0) * r for c in sizer.usable
                     for r in range(req.min_replicas, MAX_REPLICAS + 1)})
    lo = 0.0
    for hi in points:
        found = sizer.best(hi)
        if found is None:
            break
        need = found[2] / per_request_day  # volume at which the API bill reaches the self-hosted cost
        if need <= hi:
            n = max(lo, need)
            return BreakEven(against=api.id, requests_per_day=n, api_monthly_usd=n * per_request_day,
                             note=f"from {n:,.0f} requests/day ({api.name} ${n * per_request_day:,.0f}/month) "
                                  f"self-hosting costs less: {found[1]} x {found[0].instance_type}")
        lo = hi
    return BreakEven(against=api.id, requests_per_day=None, api_monthly_usd=None,
                     note=f"self-hosting never costs less than {api.name} up to {lo:,.0f} requests/day "
                          f"({MAX_REPLICAS} replicas)")


def tco(req: TcoRequest, catalog: Catalog | None = None) -> TcoResult:
    cat = catalog or default_catalog()
    prices = api_prices()
    apis = [api_cost(k, o, req) for k, o in prices.options.items()]
    sizer = _Sizer(req, cat)
    hosted = _self_hosted(sizer, req)
    options = {a.id: a.monthly_usd for a in apis} | {"self-hosted": hosted.monthly_usd}
    return TcoResult(
        request=req, apis=apis, self_hosted=hosted, cheapest=min(options, key=lambda k: options[k]),
        break_even=[_break_even(sizer, a, req) for a in apis],
        assumptions=[
            f"month = {aws_prices().hours:g} h = {req.days_per_month:.2f} days",
            f"peak-to-average request rate {req.peak_to_average:g} (replicas sized for the peak)",
            f"SLA: p95 {req.p95_seconds:g} s at batch {req.concurrency} per replica",
            f"ops overhead ${req.ops_usd_per_month:,.0f}/month (explicit input)",
            f"self-hosting priced as a stack in {req.region}: GPU nodes ({req.purchase.value}), EKS, system nodes, "
            f"{req.egress.value} egress over {req.az_count} AZs, CloudWatch",
        ],
        rejected=[r for r in sizer.rows if not r.feasible],
    )


# --------------------------------------------------------------------------- the report's scenarios


class ScenarioSelfHosted(Frozen):
    model: str
    gpus: list[str] | None = None
    purchase: PurchaseOption
    ops_usd_per_month: float
    note: str


class Scenario(Frozen):
    id: str
    requests_per_day: float
    output_tokens: int
    report: dict[str, float]
    self_hosted: ScenarioSelfHosted


class Crossover(Frozen):
    low: float
    high: float
    decision: float


class ReportFacts(Frozen):
    source: Source
    scenarios: list[Scenario]
    quality: dict[str, dict[str, float | str]]
    api_spend_crossover_usd_per_month: Crossover
    minimum_ops_usd_per_month: float


@cache
def report_facts(path: Path = REPORT_FILE) -> ReportFacts:
    return validate_file(ReportFacts, read_yaml(path), path)


class ScenarioRow(Frozen):
    option: str
    report_usd: float | None
    kit_usd: float
    ratio: float | None  # kit / report
    explanation: str


class ScenarioResult(Frozen):
    id: str
    requests_per_day: float
    output_tokens: int
    input_tokens: float
    rows: list[ScenarioRow]
    kit_cheapest: str
    report_cheapest: str
    self_hosted: SelfHosted


def _api_explanation(a: ApiCost, option: ApiOption, report: float, req: TcoRequest) -> str:
    month = req.days_per_month / 30
    tokens_30 = req.requests_per_day * 30 * req.output_tokens / 1e6  # M output tokens in the report's 30 days
    if abs(a.monthly_usd / report / month - 1) <= 0.01:
        return (f"same price x volume; the kit's month is {req.days_per_month:.2f} days ({aws_prices().hours:g} h), "
                f"the report's 30 ({(month - 1):+.1%})")
    if option.blended_usd_per_million is not None:
        implied = report / option.blended_usd_per_million.value * 1e6 / (req.requests_per_day * 30)
        return (f"the report's ${report:,.0f} at its own {option.price_text()} implies ~{implied:,.0f} tokens per "
                f"request, i.e. ~{implied - req.output_tokens:,.0f} input tokens its API rows do not count; the kit "
                f"prices the {req.input_tokens:,.0f} in + {req.output_tokens} out tokens given")
    implied = report / tokens_30
    assert option.output_usd_per_million is not None
    return (f"the report's ${report:,.0f} is ${implied:.2f} per 1M output tokens, below its own stated "
            f"${option.output_usd_per_million.value:g}/1M output; the kit applies the stated price")


def _hosted_explanation(sh: SelfHosted, report: float, scen: Scenario, cat: Catalog) -> str:
    inst = cat.instances[sh.instance_type]
    gpu_h = (inst.on_demand_usd_per_hour or 0) / inst.gpus
    left = report - sh.ops_usd_per_month
    gpus_paid = sh.nodes * inst.gpus
    text = (f"the kit needs {sh.replicas} replica(s) x TP {sh.tensor_parallel_size} on {sh.nodes} whole "
            f"{sh.instance_type} node(s) = {gpus_paid} {sh.gpu_type} GPUs billed (AWS sells these GPUs only in "
            f"{inst.gpus}-GPU nodes) at {sh.purchase.value}: ${sh.gpu_monthly_usd:,.0f} GPU + "
            f"${sh.fixed_monthly_usd:,.0f} fixed + ${sh.ops_usd_per_month:,.0f} ops. ")
    if left > 0:
        hours = aws_prices().hours
        text += (f"The report's ${report:,.0f} less the same ops leaves ${left:,.0f}, i.e. "
                 f"{left / (gpu_h * hours):.1f} {sh.gpu_type} GPUs around the clock at AWS on-demand "
                 f"${gpu_h:.2f}/GPU-h - its figure assumes per-GPU prices AWS does not offer. ")
    else:
        text += f"The report's ${report:,.0f} does not even cover the ops it names. "
    return text + f"Report assumptions: {scen.self_hosted.note}."


def report_scenarios(input_tokens: float = 0, catalog: Catalog | None = None) -> list[ScenarioResult]:
    """The report's three scenarios, priced by the kit (``input_tokens`` 0 = the report's own basis:
    its GPT-4o figures are output tokens x $10/1M exactly)."""
    cat = catalog or default_catalog()
    facts = report_facts()
    options = api_prices().options
    out: list[ScenarioResult] = []
    for scen in facts.scenarios:
        req = TcoRequest(requests_per_day=scen.requests_per_day, input_tokens=input_tokens,
                         output_tokens=scen.output_tokens, model=scen.self_hosted.model, gpus=scen.self_hosted.gpus,
                         purchase=scen.self_hosted.purchase, ops_usd_per_month=scen.self_hosted.ops_usd_per_month)
        res = tco(req, cat)
        rows: list[ScenarioRow] = []
        for a in res.apis:
            rep = scen.report.get(a.id)
            rows.append(ScenarioRow(
                option=a.name, report_usd=rep, kit_usd=a.monthly_usd, ratio=a.monthly_usd / rep if rep else None,
                explanation=_api_explanation(a, options[a.id], rep, req) if rep else "not in the report's table"))
        sh = res.self_hosted
        rep = scen.report.get("self-hosted")
        rows.append(ScenarioRow(
            option=f"Self-hosted {sh.model}", report_usd=rep, kit_usd=sh.monthly_usd,
            ratio=sh.monthly_usd / rep if rep else None,
            explanation=_hosted_explanation(sh, rep, scen, cat) if rep else "not in the report's table"))
        report_costs = dict(scen.report)
        out.append(ScenarioResult(
            id=scen.id, requests_per_day=scen.requests_per_day, output_tokens=scen.output_tokens,
            input_tokens=input_tokens, rows=rows, kit_cheapest=res.cheapest,
            report_cheapest=min(report_costs, key=lambda k: report_costs[k]), self_hosted=sh))
    return out


def check_region(region: str) -> None:
    if region not in aws_prices().region_factors:
        raise UserError("no price data for region", path="--region", given=region,
                        allowed=", ".join(sorted(aws_prices().region_factors)))
