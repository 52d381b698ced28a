"""Sweep arithmetic and the report files, on hand-built results."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests.reports import write_report, write_sweep
from loadtests.sla import Report, SlaTarget, Verdict
from loadtests.sweep import SweepResult, SweepStep, concurrency_steps


def _report(p95: float, verdict: Verdict, c: int) -> Report:
    return Report(verdict=verdict, p95_e2e_s=p95, p95_ttft_s=0.1, p95_ci_s=(p95 * 0.95, p95 * 1.05), samples=500,
                  error_rate=0.0, concurrency=c, achieved_concurrency=c - 0.01, reasons=["r"],
                  target=SlaTarget(p95_e2e_s=3.0, concurrency=c), details={"requestsPerSecond": c / p95},
                  e2e_values=[p95 * 0.8, p95])


def test_concurrency_steps() -> None:
    assert concurrency_steps(32) == [1, 2, 4, 8, 16, 32]
    assert concurrency_steps(48) == [1, 2, 4, 8, 16, 32, 48]
    assert concurrency_steps(1) == [1]


def test_sweep_replicas_needed_and_files(tmp_path: Path) -> None:
    steps = [SweepStep(c, _report(p, Verdict.PASS if p < 3 else Verdict.FAIL, c), p < 3, c / p)
             for c, p in ((16, 1.6), (32, 2.0), (64, 4.0))]
    res = SweepResult(target=SlaTarget(p95_e2e_s=3.0, concurrency=32), steps=steps, knee=32, replicas=2,
                      target_rps=40.0, max_num_seqs=32, predicted_knee=16)
    # At the knee: 32 in flight / 2.0 s = 16 req/s over 2 replicas = 8 req/s each; 40 req/s -> 5 replicas.
    assert res.knee_per_replica == 16 and res.replicas_needed == 5
    body = res.to_json()
    assert body["throughputAtKneeRps"] == 16.0 and body["replicasNeeded"] == 5
    assert any("max-num-seqs 32 is above" in n for n in body["notes"])
    write_sweep(res, json_path=tmp_path / "s.json", markdown_path=tmp_path / "s.md", html_path=tmp_path / "s.html")
    assert json.loads((tmp_path / "s.json").read_text())["knee"] == 32
    assert "| 64 | 4.000 |" in (tmp_path / "s.md").read_text()
    assert "data:image/png;base64," in (tmp_path / "s.html").read_text()


def test_report_files(tmp_path: Path) -> None:
    rep = _report(2.0, Verdict.PASS, 32)
    write_report(rep, json_path=tmp_path / "r.json", markdown_path=tmp_path / "r.md", html_path=tmp_path / "r.html")
    assert json.loads((tmp_path / "r.json").read_text()) == rep.to_json()
    md = (tmp_path / "r.md").read_text()
    assert md.startswith("# SLA load test: PASS") and "| p95 end-to-end | 2.000s (SLA 3.000s) |" in md
    assert "<img" in (tmp_path / "r.html").read_text()
