"""Grafana dashboards: valid JSON, SLA lines from the stack file, every query real PromQL.

"Parses as PromQL" is checked by Prometheus' own parser: each panel query becomes a recording
rule in a temporary rule file for ``promtool check rules`` (after the one substitution Grafana
makes, ``$__rate_interval`` -> a range). promtool is required: without it these tests fail.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from servekit import dashboards as db
from servekit.spec import DeploymentSpec

REPO = Path(__file__).resolve().parents[1]
METRICS_JSON = REPO / "servekit" / "data" / "vllm-metrics.json"


def promtool_path() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed; these tests need it. Install Debian's prometheus package: "
            "apt-get update && apt-get install -y --no-install-recommends prometheus",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="session")
def vllm_metrics() -> dict[str, Any]:
    if not METRICS_JSON.exists():
        pytest.fail(f"{METRICS_JSON} is missing (scripts/vllm_probe.py metrics writes it)", pytrace=False)
    metrics: dict[str, Any] = json.loads(METRICS_JSON.read_text())["metrics"]
    return metrics


@pytest.fixture(scope="session")
def buckets(vllm_metrics: dict[str, Any]) -> dict[str, list[float]]:
    return {n: [float(b) for b in e["buckets"]] for n, e in vllm_metrics.items() if e["type"] == "histogram"}


def make_spec(*models: dict[str, Any], stack: str = "t") -> DeploymentSpec:
    return DeploymentSpec.model_validate({
        "stack": stack,
        "tags": {"owner": "ml-team", "costCenter": "cc-1", "dataClassification": "internal"},
        "models": list(models),
    })


SPEC = make_spec(
    {"name": "chat", "model": "llama-3.1-8b-instruct", "gpuMemoryUtilization": 0.88,
     "sla": {"p95E2eSeconds": 3.0, "p95TtftSeconds": 0.4, "concurrencyPerReplica": 24, "maxErrorRate": 0.02}},
    {"name": "batch", "model": "llama-3.1-8b-instruct",
     "sla": {"p95E2eSeconds": 20.0, "concurrencyPerReplica": 8, "maxErrorRate": 0.0}},
)


def stack_specs() -> list[DeploymentSpec]:
    from servekit.stackfile import available_stacks, load_stack

    return [load_stack(name) for name in available_stacks()]


def panels_by_title(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in db.iter_panels(board) if p["type"] != "row"}


def red_line(panel: dict[str, Any]) -> float | None:
    """The constant line Grafana draws: the red threshold step, shown only in line mode."""
    defaults = panel["fieldConfig"]["defaults"]
    if defaults["custom"]["thresholdsStyle"]["mode"] == "off":
        return None
    steps = [s for s in defaults["thresholds"]["steps"] if s["color"] == "red"]
    assert len(steps) == 1
    value: float = steps[0]["value"]
    return value


def grafana_to_promql(expr: str) -> str:
    """What Grafana sends: ``$__rate_interval`` resolved. Any other variable would be a bug here."""
    out = expr.replace("$__rate_interval", "2m")
    assert "$" not in out, f"unresolved Grafana variable in {expr!r}"
    return out


# ------------------------------------------------------------------------ JSON and layout


def test_dashboard_json_loads_and_is_well_formed(buckets: dict[str, list[float]]) -> None:
    boards = db.dashboards(SPEC, histogram_buckets=buckets)
    assert set(boards) == {"chat", "batch"}
    for name, board in boards.items():
        loaded = json.loads(db.dashboard_json(board))
        assert loaded == board
        assert loaded["uid"] == f"servekit-t-{name}" and loaded["title"] == f"servekit t / {name}"
        assert [v["name"] for v in loaded["templating"]["list"]] == ["datasource"]
        panels = list(db.iter_panels(loaded))
        ids = [p["id"] for p in panels]
        assert len(ids) == len(set(ids))
        cells = set()
        for p in panels:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24
            for dy in range(g["h"]):  # no two panels share a grid cell
                for dx in range(g["w"]):
                    cell = (g["x"] + dx, g["y"] + dy)
                    assert cell not in cells, f"panel {p['title']!r} overlaps another"
                    cells.add(cell)
            if p["type"] != "row":
                refs = [t["refId"] for t in p["targets"]]
                assert refs and len(refs) == len(set(refs))
                assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}


def test_dashboard_has_the_panels_the_issue_asks_for(buckets: dict[str, list[float]]) -> None:
    board = db.dashboard(SPEC, SPEC.models[0], histogram_buckets=buckets)
    exprs = " ".join(e for _, e in db.panel_queries(board))
    for needle in ("histogram_quantile(0.95", "vllm:e2e_request_latency_seconds_bucket",  # latency percentiles
                   "vllm:request_success_total", "vllm:generation_tokens_total",  # throughput
                   "vllm:kv_cache_usage_perc", "vllm:num_requests_waiting", "vllm:num_preemptions_total",
                   "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"):
        assert needle in exprs, needle
    # Each query is about this model only (or its namespace, for the GPU exporter).
    for _, expr in db.panel_queries(board):
        assert 'model_name="chat"' in expr or 'namespace="chat"' in expr, expr


def test_sla_numbers_are_drawn_as_lines(buckets: dict[str, list[float]]) -> None:
    chat = panels_by_title(db.dashboard(SPEC, SPEC.models[0], histogram_buckets=buckets))
    batch = panels_by_title(db.dashboard(SPEC, SPEC.models[1], histogram_buckets=buckets))
    assert red_line(chat["End-to-end latency"]) == 3.0
    assert red_line(batch["End-to-end latency"]) == 20.0
    assert red_line(chat["Time to first token"]) == 0.4
    assert red_line(batch["Time to first token"]) is None  # batch states no TTFT SLA
    assert red_line(chat["Failed requests"]) == 0.02
    assert red_line(chat["Queue"]) == 24 and red_line(batch["Queue"]) == 8
    assert red_line(chat["Slow requests (latency SLO bad events)"]) == pytest.approx(0.05)
    assert red_line(chat["GPU memory used"]) == 0.88
    assert "3 s" in chat["End-to-end latency"]["description"]


def test_long_names_get_short_stable_uids() -> None:
    long_a, long_b = "a" * 40, "a" * 39 + "b"
    uid_a, uid_b = db.dashboard_uid("production-eu", long_a), db.dashboard_uid("production-eu", long_b)
    assert len(uid_a) <= 40 and len(uid_b) <= 40 and uid_a != uid_b
    assert uid_a == db.dashboard_uid("production-eu", long_a)
    assert re.fullmatch(r"[A-Za-z0-9_-]+", uid_a)


# ------------------------------------------------------------------------ PromQL


def check_queries_parse(tmp_path: Path, queries: list[tuple[str, str]]) -> subprocess.CompletedProcess[str]:
    rules = [{"record": f"dashboard:query_{i}:check", "expr": grafana_to_promql(expr)}
             for i, (_, expr) in enumerate(queries)]
    path = tmp_path / "panel-queries.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "panels", "rules": rules}]}, sort_keys=False))
    return subprocess.run([promtool_path(), "check", "rules", str(path)], capture_output=True, text=True,
                          timeout=120)


def test_every_panel_query_parses_as_promql(tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    boards = [b for spec in (SPEC, *stack_specs()) for b in db.dashboards(spec, histogram_buckets=buckets).values()]
    queries = [q for board in boards for q in db.panel_queries(board)]
    assert len(queries) >= 20 * len(boards)
    res = check_queries_parse(tmp_path, queries)
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUCCESS: {len(queries)} rules found" in res.stdout


def test_the_parse_check_rejects_bad_promql(tmp_path: Path) -> None:
    res = check_queries_parse(tmp_path, [("bad", 'sum(rate(vllm:x{model_name="a"}[$__rate_interval])')])
    assert res.returncode != 0


def test_every_vllm_metric_on_the_dashboard_exists(vllm_metrics: dict[str, Any],
                                                    buckets: dict[str, list[float]]) -> None:
    series = {s for e in vllm_metrics.values() if not e.get("conditional") for s in e["series"]}
    board = db.dashboard(SPEC, SPEC.models[0], histogram_buckets=buckets)
    used = {n for _, e in db.panel_queries(board) for n in re.findall(r"(?<![A-Za-z0-9_:])vllm:[A-Za-z0-9_:]+", e)}
    assert len(used) >= 8
    assert used <= series, used - series


def test_latency_panel_computes_the_p95(tmp_path: Path, buckets: dict[str, list[float]]) -> None:
    """Evaluate the p95 panel query on synthetic series: all requests at 4 s, inside vLLM's (2.5, 5] bucket.

    Prometheus interpolates linearly inside the bucket: 2.5 + 0.95 * (5 - 2.5) = 4.875 s, above chat's
    3 s SLA line even though 4 s is under the bucket's upper bound.
    """
    board = db.dashboard(SPEC, SPEC.models[0], histogram_buckets=buckets)
    p95 = next(t["expr"] for t in panels_by_title(board)["End-to-end latency"]["targets"] if t["legendFormat"] == "p95")
    metric = "vllm:e2e_request_latency_seconds"
    series = []
    for b in [*buckets[metric], float("inf")]:
        le = "+Inf" if b == float("inf") else repr(b)
        per_min = 60 if b >= 4.0 else 0
        series.append({"series": f'{metric}_bucket{{model_name="chat",engine="0",le="{le}"}}',
                       "values": f"0+{per_min}x30"})
    (tmp_path / "empty.yaml").write_text("groups: []\n")
    test = {"rule_files": ["empty.yaml"], "evaluation_interval": "1m", "tests": [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [{"expr": grafana_to_promql(p95), "eval_time": "20m",
                              "exp_samples": [{"labels": '{model_name="chat"}', "value": 4.875}]}]}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    res = subprocess.run([promtool_path(), "test", "rules", str(path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
