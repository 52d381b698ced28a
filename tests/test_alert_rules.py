"""Prometheus rules generated from the SLA: names checked against vLLM, parsed and unit-tested by promtool.

Independence: the expected behaviour is derived here, not read back from servekit.alert_rules.
The bucket bounds come from servekit/data/vllm-metrics.json (generated from the pinned vllm
package) read directly; the burn-rate tiers are restated from the SRE Workbook; the synthetic
series are built from the SLA numbers of each spec (a p95 SLA tolerates 5 % slow requests, so 4 %
slow must stay silent and 6 % must fire). Only alert *identity* (labels, annotation text) is taken
from the generated rules, and promtool then checks the annotations render exactly so.

promtool (Debian package ``prometheus``, 2.42) is required: without it these tests fail.
"""

from __future__ import annotations

import json
import math
import re
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit import alert_rules as ar
from servekit.cli import app
from servekit.cli._common import run_app
from servekit.errors import UserError
from servekit.spec import DeploymentSpec

REPO = Path(__file__).resolve().parents[1]
METRICS_JSON = REPO / "servekit" / "data" / "vllm-metrics.json"
E2E, TTFT = "vllm:e2e_request_latency_seconds", "vllm:time_to_first_token_seconds"

# SRE Workbook ch. 5, multiwindow multi-burn-rate table: (long, short, burn factor, severity).
WORKBOOK_TIERS = [("1h", "5m", 14.4, "critical"), ("6h", "30m", 6.0, "critical"),
                  ("1d", "2h", 3.0, "warning"), ("3d", "6h", 1.0, "warning")]
BUDGET = 0.05  # "p95 <= T": 5 % of requests may be slower than T
PER_MIN = 1000  # synthetic requests per minute: shares in steps of 0.1 % stay integers


# ------------------------------------------------------------------------------------ fixtures


def promtool_path() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed; these tests need it. Install Debian's prometheus package: "
            "apt-get update && apt-get install -y --no-install-recommends prometheus",
            pytrace=False,
        )
    return path


def run_promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool_path(), *map(str, args)], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def vllm_metrics() -> dict[str, Any]:
    if not METRICS_JSON.exists():
        pytest.fail(f"{METRICS_JSON} is missing (scripts/vllm_probe.py metrics writes it)", pytrace=False)
    data: dict[str, Any] = json.loads(METRICS_JSON.read_text())
    assert data["vllmVersion"] == "0.33.0", "the rules were written against vLLM 0.33.0; re-check them"
    return data["metrics"]


@pytest.fixture(scope="session")
def buckets(vllm_metrics: dict[str, Any]) -> dict[str, list[float]]:
    return {n: [float(b) for b in e["buckets"]] for n, e in vllm_metrics.items() if e["type"] == "histogram"}


def model(name: str, p95: float, *, ttft: float | None = None, conc: int = 16,
          err: float | None = None, **extra: Any) -> dict[str, Any]:
    sla: dict[str, Any] = {"p95E2eSeconds": p95, "concurrencyPerReplica": conc}
    if ttft is not None:
        sla["p95TtftSeconds"] = ttft
    if err is not None:
        sla["maxErrorRate"] = err
    return {"name": name, "model": "llama-3.1-8b-instruct", "sla": sla, **extra}


def make_spec(*models: dict[str, Any], stack: str = "t") -> DeploymentSpec:
    return DeploymentSpec.model_validate({
        "stack": stack, "environment": "prod",
        "tags": {"owner": "ml-team", "costCenter": "cc-1", "dataClassification": "internal"},
        "models": list(models),
    })


# chat: thresholds between bucket bounds (3 s e2e, 300 ms TTFT), 1 % error budget.
# batch: threshold on a bound (10 s), zero error budget, may scale to zero.
MIXED = make_spec(
    model("chat", 3.0, ttft=0.3, conc=16, err=0.01, gpuMemoryUtilization=0.9),
    model("batch", 10.0, conc=8, err=0.0, autoscaling={"minReplicas": 0, "maxReplicas": 2}),
)


def stack_specs() -> list[tuple[str, DeploymentSpec]]:
    from servekit.stackfile import available_stacks, load_stack

    return [(name, load_stack(name)) for name in available_stacks()]


def all_rules(groups: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for g in groups for r in g["rules"]]


# ------------------------------------------------------------------------ names and buckets


VLLM_NAME = re.compile(r"(?<![A-Za-z0-9_:])vllm:[A-Za-z0-9_:]+")


def vllm_series_in(expr: str) -> set[str]:
    return set(VLLM_NAME.findall(expr))


def family_of(series: str, metrics: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    for family, entry in metrics.items():
        if series in entry["series"]:
            return family, entry
    raise AssertionError(f"{series} is not a series the pinned vLLM exports")


@pytest.mark.parametrize("spec", [MIXED, make_spec(model("x", 1.0))], ids=["mixed", "single"])
def test_every_vllm_metric_in_the_rules_exists_in_the_pinned_vllm(
    spec: DeploymentSpec, vllm_metrics: dict[str, Any], buckets: dict[str, list[float]]
) -> None:
    exprs = [r["expr"] for r in all_rules(ar.rule_groups(spec, histogram_buckets=buckets))]
    used = set().union(*(vllm_series_in(e) for e in exprs))
    assert {f"{E2E}_bucket", f"{TTFT}_bucket", "vllm:request_success_total"} <= used  # the regex finds names
    for series in sorted(used):
        family, entry = family_of(series, vllm_metrics)
        assert not entry.get("conditional"), f"{family} only exists when an optional feature is on"
    # Every label the rules select or group vLLM series by is one vLLM puts on them.
    for expr in exprs:
        for series, matchers in re.findall(r"(vllm:[A-Za-z0-9_:]+)\{([^}]*)\}", expr):
            _, entry = family_of(series, vllm_metrics)
            names = {m.split("=")[0].rstrip("!~") for m in matchers.split(",")}
            allowed = set(entry["labels"]) | ({"le"} if series.endswith("_bucket") else set())
            assert names <= allowed, f"{series}: {names - allowed} not among vLLM's labels {allowed}"


def test_bucket_bounds_used_are_vllm_histogram_buckets(
    vllm_metrics: dict[str, Any], buckets: dict[str, list[float]]
) -> None:
    spec = make_spec(model("a", 3.0, ttft=0.3), model("b", 10.0, ttft=2.5), model("c", 0.2, ttft=0.0005))
    seen = 0
    for rule in all_rules(ar.rule_groups(spec, histogram_buckets=buckets)):
        for series, le in re.findall(r'(vllm:[a-z0-9_:]+)_bucket\{[^}]*le="([^"]+)"', rule["expr"]):
            listed = [repr(b) for b in vllm_metrics[series]["buckets"]]  # prometheus_client's le spelling
            assert le in listed, f"{series} has no bucket le={le}"
            seen += 1
    assert seen >= 6 * 7  # three models x two SLOs x seven windows
    # The bound chosen is the smallest >= the SLA threshold, computed here from the JSON alone.
    for threshold, metric in [(3.0, E2E), (10.0, E2E), (0.2, E2E), (0.3, TTFT), (2.5, TTFT), (0.0005, TTFT)]:
        expected = min(b for b in vllm_metrics[metric]["buckets"] if b >= threshold)
        assert ar.slo_bucket(threshold, buckets[metric], metric=metric) == expected


def test_default_buckets_are_the_pinned_vllm_ones(buckets: dict[str, list[float]]) -> None:
    assert ar.rule_groups(MIXED) == ar.rule_groups(MIXED, histogram_buckets=buckets)


def test_threshold_off_a_bucket_bound_is_reported_and_annotated(buckets: dict[str, list[float]]) -> None:
    notes = ar.rule_notes(MIXED, histogram_buckets=buckets)
    assert len(notes) == 2  # chat's 3 s e2e (-> 5 s) and 300 ms TTFT (-> 500 ms); batch's 10 s is a bound
    assert any("chat" in n and "3 s" in n and "5 s" in n for n in notes)
    assert any("chat" in n and "300 ms" in n and "500 ms" in n for n in notes)
    burns = [r for r in all_rules(ar.rule_groups(MIXED, histogram_buckets=buckets))
             if r.get("alert") == "ServekitE2eLatencyBudgetBurn"]
    chat = {r["annotations"]["slo_bucket"] for r in burns if r["labels"]["model_name"] == "chat"}
    batch = {r["annotations"]["slo_bucket"] for r in burns if r["labels"]["model_name"] == "batch"}
    assert len(chat) == 1 and "lenient" in chat.pop()
    assert len(batch) == 1 and "lenient" not in batch.pop()


def test_threshold_beyond_the_last_bucket_is_a_user_error() -> None:
    with pytest.raises(UserError, match="cannot be measured"):
        ar.slo_bucket(700.0, [1.0, 600.0], metric=E2E)


def test_le_label_spelling_matches_prometheus_client() -> None:
    # prometheus_client writes le with Python's float repr below 1e6 (floatToGoString).
    assert [ar.le_label(b) for b in (1, 2.5, 0.001, 7680)] == ["1.0", "2.5", "0.001", "7680.0"]
    with pytest.raises(ValueError):
        ar.le_label(1e7)


# ------------------------------------------------------------------------ structure


def test_alerts_carry_severity_runbook_and_sla_numbers(buckets: dict[str, list[float]]) -> None:
    groups = ar.rule_groups(MIXED, histogram_buckets=buckets)
    assert [g["name"] for g in groups] == [
        "servekit-t-model-chat", "servekit-t-model-batch", "servekit-t-gpu", "servekit-t-kubernetes"]
    alerts = [r for r in all_rules(groups) if "alert" in r]
    for a in alerts:
        assert a["labels"]["severity"] in {"critical", "warning", "info"}
        assert {"summary", "description", "runbook_url"} <= set(a["annotations"])
        assert a["annotations"]["runbook_url"].endswith("#" + a["alert"].lower())
        assert a["labels"]["stack"] == "t" and a["labels"]["owner"] == "ml-team"
    by = {(a["alert"], a["labels"].get("model_name"), a["labels"].get("long_window")): a for a in alerts}
    assert by[("ServekitE2eLatencyP95AboveSla", "chat", None)]["expr"].endswith("> 3.0")
    assert by[("ServekitTtftP95AboveSla", "chat", None)]["expr"].endswith("> 0.3")
    assert by[("ServekitE2eLatencyP95AboveSla", "batch", None)]["expr"].endswith("> 10.0")
    assert ("ServekitTtftP95AboveSla", "batch", None) not in by  # batch states no TTFT SLA
    assert by[("ServekitRequestQueueBacklog", "batch", None)]["expr"].endswith(">= 8")
    assert by[("ServekitErrorRateAboveSla", "chat", None)]["expr"].endswith("> 0.01")
    # Scale-to-zero models may have no metrics; the others must.
    assert ("ServekitVllmMetricsAbsent", "chat", None) in by
    assert ("ServekitVllmMetricsAbsent", "batch", None) not in by
    for long_w, short_w, factor, severity in WORKBOOK_TIERS:
        rule = by[("ServekitE2eLatencyBudgetBurn", "chat", long_w)]
        assert rule["labels"]["short_window"] == short_w and rule["labels"]["severity"] == severity
        assert f"({factor!r} * 0.05)" in rule["expr"]


def test_rule_file_is_yaml_of_the_groups(buckets: dict[str, list[float]]) -> None:
    groups = ar.rule_groups(MIXED, histogram_buckets=buckets)
    assert yaml.safe_load(ar.rule_file(groups)) == {"groups": groups}


# ------------------------------------------------------------------------ promtool check rules


def check_rules(tmp_path: Path, groups: list[dict[str, Any]], name: str = "rules.yaml") -> None:
    path = tmp_path / name
    path.write_text(ar.rule_file(groups))
    res = run_promtool("check", "rules", path)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(all_rules(groups))} rules found" in res.stdout


def test_promtool_check_rules_on_specs(tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    specs = [MIXED, make_spec(model("solo", 0.25, ttft=0.001, err=1.0)),
             make_spec(*(model(f"m{i}", 2.0 * (i + 1), ttft=0.5) for i in range(5)), stack="five")]
    for i, spec in enumerate(specs):
        check_rules(tmp_path, ar.rule_groups(spec, histogram_buckets=buckets), f"spec{i}.yaml")


def test_promtool_check_rules_on_every_stack(tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    stacks = stack_specs()
    assert {"dev", "prod", "regulated"} <= {n for n, _ in stacks}
    for name, spec in stacks:
        check_rules(tmp_path, ar.rule_groups(spec, histogram_buckets=buckets), f"{name}.yaml")


def test_promtool_rejects_a_broken_rule(tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    # The checker really parses: the same file with one expression broken fails.
    groups = ar.rule_groups(MIXED, histogram_buckets=buckets)
    groups[0]["rules"][0]["expr"] += " +"
    path = tmp_path / "broken.yaml"
    path.write_text(ar.rule_file(groups))
    assert run_promtool("check", "rules", path).returncode != 0


# ------------------------------------------------------------------------ synthetic series

# promtool series notation: "a+bxn" is a, a+b, ..., a+n*b at one sample per interval (1m here).


def num(x: float) -> str:
    """Plain decimal (promtool's notation would misread 1.5e+06+...), float noise rounded away."""
    return f"{x:.6f}".rstrip("0").rstrip(".")


def counter_values(phases: Iterable[tuple[float, int]]) -> str:
    """A counter increasing by ``inc`` per minute for ``minutes`` in each phase, from 0."""
    parts, value, first = [], 0.0, True
    for inc, minutes in phases:
        if first:
            parts.append(f"{num(value)}+{num(inc)}x{minutes}")
            value += inc * minutes
            first = False
        else:
            value += inc
            parts.append(f"{num(value)}+{num(inc)}x{minutes - 1}")
            value += inc * (minutes - 1)
    return " ".join(parts)


def gauge_values(phases: Iterable[tuple[float, int]]) -> str:
    return " ".join(f"{num(v)}+0x{n if i == 0 else n - 1}" for i, (v, n) in enumerate(phases))


Series = list[dict[str, str]]
Mix = dict[float, float]  # latency (s) -> share of requests


def labels_str(labels: Mapping[str, str]) -> str:
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"


def histogram(metric: str, model_name: str, bounds: list[float], phases: list[tuple[Mix, int]]) -> Series:
    """Cumulative bucket, count and sum counters of ``PER_MIN`` requests/min with latencies ``mix``."""
    base = {"model_name": model_name, "engine": "0"}
    out = []
    for b in [*bounds, math.inf]:
        le = "+Inf" if b == math.inf else repr(float(b))
        incs = [(PER_MIN * sum(s for lat, s in mix.items() if lat <= b), n) for mix, n in phases]
        out.append({"series": metric + "_bucket" + labels_str(base | {"le": le}), "values": counter_values(incs)})
    out.append({"series": metric + "_count" + labels_str(base),
                "values": counter_values([(PER_MIN, n) for _, n in phases])})
    out.append({"series": metric + "_sum" + labels_str(base), "values": counter_values(
        [(PER_MIN * sum(lat * s for lat, s in mix.items()), n) for mix, n in phases])})
    return out


def fast_and_slow(threshold: float, bounds: list[float]) -> tuple[float, float]:
    """A latency inside the SLA (a bound below it) and one the SLO must count as slow (past its bucket)."""
    fast = max(b for b in bounds if b < threshold)
    slo_bound = min(b for b in bounds if b >= threshold)
    slow = min(b for b in bounds if b > slo_bound)
    return fast, slow


def requests(model_name: str, minutes: int, *, error: float = 0.0, abort: float = 0.0,
             rejected: float | None = 0.0) -> Series:
    """vLLM's finished-request counter by reason (and queue rejections, unless ``rejected`` is None)."""
    shares = {"stop": 1.0 - error - abort, "length": 0.0, "abort": abort, "error": error, "repetition": 0.0}
    out = [{"series": "vllm:request_success_total" + labels_str(
        {"model_name": model_name, "engine": "0", "finished_reason": r}),
        "values": counter_values([(PER_MIN * s, minutes)])} for r, s in shares.items()]
    if rejected is not None:
        out += [{"series": "vllm:admission_rejections_total" + labels_str({"model_name": model_name, "reason": r}),
                 "values": counter_values([(PER_MIN * (rejected if r == "max_num_queued_reqs" else 0), minutes)])}
                for r in ("max_num_queued_reqs", "max_num_queued_tokens")]
    return out


def gauge(metric: str, model_name: str, value: float, minutes: int) -> Series:
    return [{"series": metric + labels_str({"model_name": model_name, "engine": "0"}),
             "values": gauge_values([(value, minutes)])}]


def healthy_model(spec: DeploymentSpec, name: str, minutes: int, buckets: dict[str, list[float]]) -> dict[str, Series]:
    """Series of a model meeting its SLA, by kind, for scenarios to override one kind at a time."""
    sla = next(m for m in spec.models if m.name == name).sla
    e2e_fast, _ = fast_and_slow(sla.p95_e2e_seconds, buckets[E2E])
    ttft_fast, _ = fast_and_slow(sla.p95_ttft_seconds or 1.0, buckets[TTFT])
    return {
        "e2e": histogram(E2E, name, buckets[E2E], [({e2e_fast: 1.0}, minutes)]),
        "ttft": histogram(TTFT, name, buckets[TTFT], [({ttft_fast: 1.0}, minutes)]),
        "requests": requests(name, minutes),
        "running": gauge("vllm:num_requests_running", name, sla.concurrency_per_replica / 2, minutes),
        "waiting": gauge("vllm:num_requests_waiting", name, 0, minutes),
        "kv": gauge("vllm:kv_cache_usage_perc", name, 0.5, minutes),
        "preemptions": [{"series": "vllm:num_preemptions_total" + labels_str({"model_name": name, "engine": "0"}),
                         "values": counter_values([(0, minutes)])}],
    }


# ------------------------------------------------------------------------ scenarios


@dataclass
class Fire:
    """One alert expected to fire: which rule (by its labels) and the labels its expression yields."""

    where: dict[str, str]
    result: dict[str, str] = field(default_factory=dict)
    value: str | None = None


@dataclass
class Scenario:
    name: str
    minutes: int  # series length; evaluated at the end
    overrides: dict[tuple[str, str], Series]  # (model, kind) -> series; missing kinds stay healthy
    checks: dict[str, list[Fire]]  # alertname -> alerts expected firing (empty: must stay silent)
    extra: Series = field(default_factory=list)  # non-vLLM series (DCGM, kube-state-metrics)
    include_models: bool = True


def render(template: str, labels: Mapping[str, str], value: str | None) -> str:
    """The two template forms the rules use; anything else would need Go's text/template, so refuse."""
    out = re.sub(r"\{\{ \$labels\.([A-Za-z_]+) \}\}", lambda m: labels[m.group(1)], template)
    if value is not None:
        out = out.replace("{{ $value }}", value)
    assert "{{" not in out, f"unexpected template in {template!r}"
    return out


def exp_alert(rules: list[dict[str, Any]], alertname: str, fire: Fire) -> dict[str, Any]:
    matches = [r for r in rules if r.get("alert") == alertname
               and all(r["labels"].get(k) == v for k, v in fire.where.items())]
    assert len(matches) == 1, f"{alertname} {fire.where}: {len(matches)} rules match"
    rule = matches[0]
    return {"exp_labels": fire.result | rule["labels"],
            "exp_annotations": {k: render(v, fire.result, fire.value) for k, v in rule["annotations"].items()}}


def promtool_test(tmp_path: Path, spec: DeploymentSpec, scenarios: list[Scenario],
                  buckets: dict[str, list[float]]) -> None:
    groups = ar.rule_groups(spec, histogram_buckets=buckets)
    rules = all_rules(groups)
    (tmp_path / "rules.yaml").write_text(ar.rule_file(groups))
    tests = []
    for sc in scenarios:
        series: Series = []
        if sc.include_models:
            for md in spec.models:
                kinds = healthy_model(spec, md.name, sc.minutes, buckets)
                for kind, healthy in kinds.items():
                    series += sc.overrides.get((md.name, kind), healthy)
        series += sc.extra
        tests.append({
            "name": sc.name, "interval": "1m", "input_series": series,
            "alert_rule_test": [
                {"eval_time": f"{sc.minutes}m", "alertname": alert,
                 "exp_alerts": [exp_alert(rules, alert, f) for f in fires]}
                for alert, fires in sc.checks.items()],
        })
    test_file = tmp_path / "tests.yaml"
    test_file.write_text(yaml.safe_dump(
        {"rule_files": ["rules.yaml"], "evaluation_interval": "1m", "tests": tests}, sort_keys=False))
    res = run_promtool("test", "rules", test_file)
    assert res.returncode == 0, res.stdout[-20000:] + res.stderr[-5000:]
    assert "SUCCESS" in res.stdout


def sla_alertnames(rules: list[dict[str, Any]]) -> list[str]:
    return sorted({r["alert"] for r in rules if "alert" in r and "model_name" in r["labels"]})


def latency_scenarios(spec: DeploymentSpec, name: str, key: str, threshold: float,
                      buckets: dict[str, list[float]], *, full: bool = True) -> list[Scenario]:
    """p95 and burn-rate alerts of one latency SLO of one model: broken, held, and recovering."""
    metric, kind = (E2E, "e2e") if key == "e2e" else (TTFT, "ttft")
    title = "E2eLatency" if key == "e2e" else "Ttft"
    p95_alert, burn_alert = f"Servekit{title}P95AboveSla", f"Servekit{title}BudgetBurn"
    fast, slow = fast_and_slow(threshold, buckets[metric])
    me = {"model_name": name}

    def hist(phases: list[tuple[Mix, int]]) -> dict[tuple[str, str], Series]:
        return {(name, kind): histogram(metric, name, buckets[metric], phases)}

    def tiers(share: float) -> list[Fire]:
        # A tier fires when the slow share exceeds factor x budget in both of its windows.
        return [Fire(me | {"long_window": lw}, me) for lw, _, f, _ in WORKBOOK_TIERS if share > f * BUDGET]

    out = [
        # p95 semantics: 6 % slow puts the 95th percentile in the slow bucket, 4 % does not.
        Scenario(f"{name}-{key}-p95-broken", 30, hist([({fast: 0.94, slow: 0.06}, 30)]),
                 {p95_alert: [Fire(me, me)]}),
        Scenario(f"{name}-{key}-p95-holds", 30, hist([({fast: 0.96, slow: 0.04}, 30)]), {p95_alert: []}),
    ]
    # 75 minutes: past every tier's `for` (at most 1h), with the same share in every window; shares
    # just above and below each tier's factor x budget (0.72, 0.30, 0.15, 0.05) pin its threshold.
    for share in (0.75, 0.69, 0.33, 0.27, 0.18, 0.12, 0.06, 0.04) if full else (0.75, 0.04):
        out.append(Scenario(f"{name}-{key}-burn-{share:g}", 75,
                            hist([({fast: 1 - share, slow: share}, 75)]), {burn_alert: tiers(share)}))
    # Recovered 10 minutes ago: the 1h window still burns (50/60 slow) but the 5m window is clean,
    # so the fast page stops; the slower tiers, whose short windows still see the burn, keep firing.
    if not full:
        return out
    out.append(Scenario(f"{name}-{key}-burn-recovered", 100, hist([({slow: 1.0}, 90), ({fast: 1.0}, 10)]),
                        {burn_alert: [f for f in tiers(1.0) if f.where["long_window"] != "1h"]}))
    slo_bound = min(b for b in buckets[metric] if b >= threshold)
    if slo_bound != threshold:
        # Off a bucket bound, requests between T and the bound break the p95 but not the SLO count.
        between = (threshold + slo_bound) / 2
        out.append(Scenario(f"{name}-{key}-between-threshold-and-bucket", 75, hist([({between: 1.0}, 75)]),
                            {p95_alert: [Fire(me, me)], burn_alert: []}))
    return out


def model_scenarios(spec: DeploymentSpec, buckets: dict[str, list[float]], *, full: bool = True) -> list[Scenario]:
    """Each SLA alert of each model, broken and held; ``full=False`` keeps only the SLA-number checks."""
    out: list[Scenario] = []
    for md in spec.models:
        name, sla, me = md.name, md.sla, {"model_name": md.name}
        out += latency_scenarios(spec, name, "e2e", sla.p95_e2e_seconds, buckets, full=full)
        if sla.p95_ttft_seconds is not None:
            out += latency_scenarios(spec, name, "ttft", sla.p95_ttft_seconds, buckets, full=full)
        e = sla.max_error_rate
        err = "ServekitErrorRateAboveSla"
        breaking = min(2 * e, 1.0) if e > 0 else 0.001  # one failure per thousand breaks a zero budget
        out += [
            Scenario(f"{name}-errors-broken", 30, {(name, "requests"): requests(name, 30, error=breaking)},
                     {err: [Fire(me, me)]}),
            Scenario(f"{name}-queue-a-batch-deep", 20, {(name, "waiting"): gauge(
                "vllm:num_requests_waiting", name, sla.concurrency_per_replica, 20)},
                {"ServekitRequestQueueBacklog": [Fire(me, me)]}),
            Scenario(f"{name}-queue-under-a-batch", 20, {(name, "waiting"): gauge(
                "vllm:num_requests_waiting", name, sla.concurrency_per_replica - 1, 20)},
                {"ServekitRequestQueueBacklog": []}),
        ]
        if sla.max_error_rate > 0:
            out.append(Scenario(f"{name}-errors-within-budget", 30,
                                {(name, "requests"): requests(name, 30, error=e / 2)}, {err: []}))
        if not full:
            continue
        out += [
            Scenario(f"{name}-rejections-count-as-errors", 30,
                     {(name, "requests"): requests(name, 30, rejected=breaking)}, {err: [Fire(me, me)]}),
            Scenario(f"{name}-errors-without-rejection-counter", 30,
                     {(name, "requests"): requests(name, 30, error=breaking, rejected=None)}, {err: [Fire(me, me)]}),
            Scenario(f"{name}-client-aborts-are-not-errors", 30,
                     {(name, "requests"): requests(name, 30, error=e / 2, abort=0.5)}, {err: []}),
            Scenario(f"{name}-kv-cache-full", 30, {(name, "kv"): gauge("vllm:kv_cache_usage_perc", name, 0.99, 30)},
                     {"ServekitKvCacheFull": [Fire(me, me)]}),
            Scenario(f"{name}-kv-cache-busy", 30, {(name, "kv"): gauge("vllm:kv_cache_usage_perc", name, 0.9, 30)},
                     {"ServekitKvCacheFull": []}),
            Scenario(f"{name}-preempting", 30, {(name, "preemptions"): [{
                "series": "vllm:num_preemptions_total" + labels_str(me | {"engine": "0"}),
                "values": counter_values([(5, 30)])}]}, {"ServekitPreemptions": [Fire(me, me)]}),
        ]
    # Every model's replicas gone: only models that cannot scale to zero alert.
    kinds = ("e2e", "ttft", "requests", "running", "waiting", "kv", "preemptions")
    gone: dict[tuple[str, str], Series] = {(md.name, kind): [] for md in spec.models for kind in kinds}
    expected = [Fire({"model_name": md.name}, {"model_name": md.name}) for md in spec.models
                if (md.autoscaling.min_replicas if md.autoscaling else md.replicas) > 0]
    out.append(Scenario("all-replicas-gone", 20, gone, {"ServekitVllmMetricsAbsent": expected}))
    return out


def healthy_scenario(spec: DeploymentSpec, buckets: dict[str, list[float]]) -> Scenario:
    rules = all_rules(ar.rule_groups(spec, histogram_buckets=buckets))
    return Scenario("all-slas-hold", 75, {}, {a: [] for a in sla_alertnames(rules)})


def test_sla_alerts_fire_when_broken_and_stay_silent_when_held(
    tmp_path: Path, buckets: dict[str, list[float]]
) -> None:
    scenarios = [healthy_scenario(MIXED, buckets), *model_scenarios(MIXED, buckets)]
    names = [s.name for s in scenarios]
    assert len(names) == len(set(names))
    # Every per-model alert of the spec is exercised both ways somewhere above.
    rules = all_rules(ar.rule_groups(MIXED, histogram_buckets=buckets))
    fired = {a for s in scenarios for a, fires in s.checks.items() if fires}
    assert set(sla_alertnames(rules)) <= fired
    promtool_test(tmp_path, MIXED, scenarios, buckets)


@pytest.mark.parametrize("stack", ["dev", "prod", "regulated"])
def test_stack_sla_alerts_follow_the_stack_file(stack: str, tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    from servekit.stackfile import load_stack

    spec = load_stack(stack)
    # The logic is covered on MIXED above; here the stack's own SLA numbers decide what fires.
    scenarios = [healthy_scenario(spec, buckets), *model_scenarios(spec, buckets, full=False)]
    promtool_test(tmp_path, spec, scenarios, buckets)


# ------------------------------------------------------------------------ GPU and Kubernetes alerts

GPU = {"Hostname": "ip-10-0-1-7", "gpu": "0", "UUID": "GPU-1111"}
GPU_RESULT = dict(GPU)


def dcgm(metric: str, phases: list[tuple[float, int]], namespace: str = "chat",
         gpu: Mapping[str, str] = GPU) -> dict[str, str]:
    labels = {**gpu, "modelName": "NVIDIA A100-SXM4-80GB", "namespace": namespace, "pod": f"{namespace}-0"}
    return {"series": metric + labels_str(labels), "values": gauge_values(phases)}


def kube(metric: str, labels: Mapping[str, str], values: str) -> dict[str, str]:
    return {"series": metric + labels_str(labels), "values": values}


def infra_scenarios(spec: DeploymentSpec) -> list[Scenario]:
    # vLLM reserves gpuMemoryUtilization of the GPU; "nearly full" starts 3 points above the largest.
    limit = max(m.gpu_memory_utilization for m in spec.models) + 0.03
    total = 81920.0

    def fb(ratio: float, minutes: int) -> Series:
        return [dcgm("DCGM_FI_DEV_FB_USED", [(total * ratio, minutes)]),
                dcgm("DCGM_FI_DEV_FB_FREE", [(total * (1 - ratio), minutes)])]

    pod = {"namespace": "chat", "pod": "chat-0", "container": "vllm"}
    other_pod = {"namespace": "kube-system", "pod": "coredns-0", "container": "coredns"}
    node = {"node": "ip-10-0-1-7", "condition": "Ready", "status": "true"}
    idle_other = dcgm("DCGM_FI_DEV_GPU_UTIL", [(0, 370)], namespace="other",
                      gpu={"Hostname": "ip-10-0-1-8", "gpu": "1", "UUID": "GPU-2222"})
    return [
        Scenario("xid-error", 15, {}, {"ServekitGpuXidError": [Fire({}, GPU_RESULT, "79")]},
                 [dcgm("DCGM_FI_DEV_XID_ERRORS", [(0, 10), (79, 5)])], include_models=False),
        Scenario("no-xid", 15, {}, {"ServekitGpuXidError": []},
                 [dcgm("DCGM_FI_DEV_XID_ERRORS", [(0, 15)])], include_models=False),
        Scenario("gpu-memory-over-vllm-share", 20, {}, {"ServekitGpuMemoryNearlyFull": [Fire({}, GPU_RESULT)]},
                 fb(limit + 0.02, 20), include_models=False),
        Scenario("gpu-memory-at-vllm-share", 20, {}, {"ServekitGpuMemoryNearlyFull": []},
                 fb(max(m.gpu_memory_utilization for m in spec.models), 20), include_models=False),
        Scenario("gpu-idle", 370, {}, {"ServekitGpuIdle": [Fire({}, GPU_RESULT | {"namespace": "chat"})]},
                 [dcgm("DCGM_FI_DEV_GPU_UTIL", [(1, 370)]), idle_other], include_models=False),
        Scenario("gpu-busy", 370, {}, {"ServekitGpuIdle": []},
                 [dcgm("DCGM_FI_DEV_GPU_UTIL", [(60, 370)]), idle_other], include_models=False),
        Scenario("node-not-ready", 15, {}, {"ServekitNodeNotReady": [Fire({}, node)]},
                 [kube("kube_node_status_condition", node, gauge_values([(1, 5), (0, 10)]))], include_models=False),
        Scenario("node-ready", 15, {}, {"ServekitNodeNotReady": []},
                 [kube("kube_node_status_condition", node, gauge_values([(1, 15)]))], include_models=False),
        Scenario("vllm-restarted", 15, {}, {"ServekitVllmPodRestarted": [Fire({}, pod)]},
                 [kube("kube_pod_container_status_restarts_total", pod, gauge_values([(0, 10), (1, 5)])),
                  kube("kube_pod_container_status_restarts_total", other_pod, gauge_values([(0, 10), (3, 5)]))],
                 include_models=False),
        Scenario("vllm-restart-long-ago", 40, {}, {"ServekitVllmPodRestarted": []},
                 [kube("kube_pod_container_status_restarts_total", pod, gauge_values([(0, 10), (1, 30)]))],
                 include_models=False),
        Scenario("vllm-crashloop", 25, {}, {"ServekitVllmPodCrashLooping": [
            Fire({}, pod | {"reason": "CrashLoopBackOff"})]},
            [kube("kube_pod_container_status_waiting_reason", pod | {"reason": "CrashLoopBackOff"},
                  gauge_values([(1, 25)]))], include_models=False),
        Scenario("vllm-pending", 20, {}, {"ServekitVllmPodPending": [
            Fire({}, {"namespace": "chat", "pod": "chat-0", "phase": "Pending"})]},
            [kube("kube_pod_status_phase", {"namespace": "chat", "pod": "chat-0", "phase": "Pending"},
                  gauge_values([(1, 20)]))], include_models=False),
        Scenario("vllm-scheduled", 20, {}, {"ServekitVllmPodPending": []},
                 [kube("kube_pod_status_phase", {"namespace": "chat", "pod": "chat-0", "phase": "Pending"},
                       gauge_values([(1, 3), (0, 17)]))], include_models=False),
    ]


def test_gpu_and_kubernetes_alerts(tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    promtool_test(tmp_path, MIXED, infra_scenarios(MIXED), buckets)


# ------------------------------------------------------------------------ CLI


def test_cli_writes_rule_files_promtool_accepts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "rules"
    assert run_app(app, ["rules", "--stack", "prod", "-o", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert report["files"] == [str(out / "servekit-prod.rules.yaml")]
    assert "5 s" in captured.err  # prod's 3 s thresholds sit between buckets: the CLI says so
    res = run_promtool("check", "rules", *report["files"])
    assert res.returncode == 0, res.stdout + res.stderr

    assert run_app(app, ["rules", "--stack", "prod", "-o", str(out / "split"), "--per-group"]) == 0
    files = sorted(p.name for p in (out / "split").iterdir())
    assert files == sorted([
        "servekit-prod-model-contracts.rules.yaml", "servekit-prod-model-extract.rules.yaml",
        "servekit-prod-gpu.rules.yaml", "servekit-prod-kubernetes.rules.yaml"])
    assert run_promtool("check", "rules", *(out / "split").iterdir()).returncode == 0


def test_cli_unknown_stack_is_a_usage_error(tmp_path: Path) -> None:
    assert run_app(app, ["rules", "--stack", "no-such-stack", "-o", str(tmp_path)]) == 2
