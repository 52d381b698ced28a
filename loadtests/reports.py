"""Write a verdict or a sweep as JSON, Markdown and HTML (with its PNG plot) files."""

from __future__ import annotations

import json
from pathlib import Path

from loadtests import plot
from loadtests.sla import Report, to_html, to_markdown
from loadtests.sweep import SweepResult
from loadtests.sweep import to_html as sweep_html
from loadtests.sweep import to_markdown as sweep_markdown


def report_png(report: Report) -> bytes:
    return plot.latency_histogram(report.e2e_values, report.target.p95_e2e_s, report.p95_e2e_s, report.p95_ci_s)


def sweep_png(result: SweepResult) -> bytes:
    return plot.sweep_plot([(s.concurrency, s.report.p95_e2e_s) for s in result.steps], result.target.p95_e2e_s,
                           result.knee)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def write_report(report: Report, *, json_path: Path | None = None, markdown_path: Path | None = None,
                 html_path: Path | None = None, title: str = "SLA load test") -> None:
    if json_path is not None:
        _write(json_path, json.dumps(report.to_json(), indent=2) + "\n")
    if markdown_path is not None:
        _write(markdown_path, to_markdown(report, title))
    if html_path is not None:
        _write(html_path, to_html(report, report_png(report), title))


def write_sweep(result: SweepResult, *, json_path: Path | None = None, markdown_path: Path | None = None,
                html_path: Path | None = None) -> None:
    if json_path is not None:
        _write(json_path, json.dumps(result.to_json(), indent=2) + "\n")
    if markdown_path is not None:
        _write(markdown_path, sweep_markdown(result))
    if html_path is not None:
        _write(html_path, sweep_html(result, sweep_png(result)))
