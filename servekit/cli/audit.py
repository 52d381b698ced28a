"""``servekit audit --stack S [--format text|json|md|html|sarif] [-o FILE] [--policy-config FILE]``.

Plans the stack offline and runs the CrossGuard pack in ``policies/`` over it exactly as
``pulumi preview --policy-pack policies --policy-pack-config policies/config/<stack>.json`` would
(:mod:`servekit.audit`), with no cloud account and no Pulumi CLI.

Formats: ``text`` (tables and a summary line), ``json`` (camelCase: ``{stack, pack, policies,
violations, summary, warnings, ...}``), ``md`` (for a pull request, violations by severity), ``html``
(one self-contained page for compliance reviewers) and ``sarif`` (SARIF 2.1.0 for GitHub code
scanning). ``-o FILE`` writes the report to FILE instead of stdout. Progress goes to stderr.

Exit codes: 0 no mandatory violation (advisory ones may exist); 1 a mandatory policy is violated
(the report is still written first); 2 bad input (unknown stack, bad stack file or policy config).
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from servekit.cli._common import check_output_file, console, err_console
from servekit.cli.plan import stacks_dir
from servekit.errors import CheckFailed, UserError

if TYPE_CHECKING:
    from servekit.audit import AuditReport, PolicyResult

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
# GitHub code scanning ranks security alerts by this property (a CVSS-like score as a string).
SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
STATUS_LABEL = {"pass": "pass", "fail": "FAIL", "not-applicable": "not applicable", "disabled": "disabled",
                "unknown": "could not run"}


class Format(StrEnum):
    TEXT = "text"
    JSON = "json"
    MD = "md"
    HTML = "html"
    SARIF = "sarif"


def _status_text(p: PolicyResult) -> str:
    if p.status == "pass" and not p.checked:
        return "pass (nothing to check)"
    return STATUS_LABEL.get(p.status, p.status)


def _sev_key(severity: str) -> int:
    from servekit.audit import SEVERITY_ORDER

    return SEVERITY_ORDER.get(severity, 9)


def _sorted_policies(report: AuditReport) -> list[PolicyResult]:
    order = {"fail": 0, "unknown": 1, "pass": 2, "not-applicable": 3, "disabled": 4}
    return sorted(report.policies, key=lambda p: (order.get(p.status, 9), _sev_key(p.severity), p.name))


# --------------------------------------------------------------------------- text


def render_text(report: AuditReport, out: Console) -> None:
    t = Table(title=f"Policy pack {report.pack.name} v{report.pack.version} on stack {report.stack} "
                    f"({report.policy_config})", title_justify="left")
    for col in ("policy", "kind", "severity", "enforcement", "status", "checked"):
        t.add_column(col, justify="right" if col == "checked" else "left")
    colour = {"fail": "red", "unknown": "yellow", "pass": "green"}
    for p in _sorted_policies(report):
        c = colour.get(p.status)
        status = f"[{c}]{_status_text(p)}[/]" if c else _status_text(p)
        t.add_row(p.name, p.kind, p.severity, p.enforcement, status, str(len(p.checked)))
    out.print(t)
    if report.violations:
        v = Table(title="Violations", title_justify="left")
        for col in ("enforcement", "severity", "policy", "resource", "message"):
            v.add_column(col, overflow="fold")
        for x in report.violations:
            lvl = f"[red]{x.enforcement}[/]" if x.mandatory else f"[yellow]{x.enforcement}[/]"
            v.add_row(lvl, x.severity, x.policy, f"{x.resource_name}\n[dim]{x.resource_type}[/]", x.message)
        out.print(v)
    out.print(("[red]" if report.exit_code else "[green]") + report.summary_line() + "[/]", soft_wrap=True)


# --------------------------------------------------------------------------- markdown


def _md(text: str) -> str:
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", "<br>")


def render_markdown(report: AuditReport) -> str:
    """For a pull request: the verdict, violations by severity (mandatory first), then every policy."""
    c = report.counts()
    verdict = "FAIL" if report.exit_code else "PASS"
    lines = [
        f"## servekit policy audit: `{report.stack}` - {verdict}",
        "",
        f"Pack `{report.pack.name}` v{report.pack.version}, config `{report.policy_config}`, stack file "
        f"`{report.stack_file}`, region {report.region}, {c['resources']} resources.",
        "",
        f"**{c['mandatoryViolations']} mandatory** and **{c['advisoryViolations']} advisory** violation(s); "
        f"{c['passed']} policies passed, {c['failed']} failed, {c['notApplicable']} not applicable, "
        f"{c['disabled']} disabled.",
        "",
    ]
    for w in report.warnings:
        lines += [f"> **Warning:** {_md(w)}", ""]
    if report.violations:
        lines += ["### Violations", "", "| Severity | Enforcement | Policy | Resource | Message | Remediation |",
                  "|---|---|---|---|---|---|"]
        for v in sorted(report.violations, key=lambda v: (_sev_key(v.severity), not v.mandatory, v.policy, v.urn)):
            lines.append(f"| {v.severity} | {v.enforcement} | `{v.policy}` | `{_md(v.resource_name)}` "
                         f"({_md(v.resource_type)}) | {_md(v.message)} | {_md(v.remediation)} |")
        lines.append("")
    else:
        lines += ["No violations.", ""]
    lines += ["<details><summary>All policies</summary>", "",
              "| Policy | Severity | Enforcement | Status | Resources checked | Controls |",
              "|---|---|---|---|---|---|"]
    for p in sorted(report.policies, key=lambda p: (_sev_key(p.severity), p.name)):
        controls = "<br>".join(_md(f) for f in p.frameworks)
        lines.append(f"| `{p.name}` | {p.severity} | {p.enforcement} | {_status_text(p)} | {len(p.checked)} "
                     f"| {controls} |")
    lines += ["", "</details>", ""]
    return "\n".join(lines)


# --------------------------------------------------------------------------- html

_CSS = """
body{font:15px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:2rem auto;max-width:1200px;
 color:#1b1f24;padding:0 1rem}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.3rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.35rem .5rem;
 vertical-align:top;text-align:left;overflow-wrap:anywhere}th{background:#f6f8fa;overflow-wrap:normal}table.fixed{table-layout:fixed}
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.9em;background:#f6f8fa;padding:0 .2em}
.badge{display:inline-block;border-radius:1em;padding:0 .6em;font-weight:600;font-size:.85em;white-space:nowrap}
.pass{background:#dafbe1;color:#116329}.fail{background:#ffebe9;color:#a40e26}
.not-applicable,.disabled{background:#eaeef2;color:#424a53}.unknown{background:#fff8c5;color:#7d4e00}
.sev-critical{color:#a40e26;font-weight:700}.sev-high{color:#bc4c00;font-weight:600}.sev-medium{color:#7d4e00}
.verdict{font-size:1.2rem;padding:.6rem 1rem;border-radius:.4rem;margin:1rem 0}
.muted{color:#57606a;font-size:.9em}ul{margin:.2rem 0;padding-left:1.2rem}
.warn{background:#fff8c5;border:1px solid #d4a72c;padding:.5rem 1rem;border-radius:.4rem}
@media print{body{margin:0;max-width:none}.badge{border:1px solid #888}}
"""


def _e(text: object) -> str:
    return html.escape(str(text))


def render_html(report: AuditReport, generated: datetime | None = None) -> str:
    """One self-contained page (no scripts, no external assets) a reviewer can read, print or archive."""
    when = (generated or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M UTC")
    c = report.counts()
    ok = report.exit_code == 0
    verdict = ("PASS: no mandatory policy is violated" if ok else
               f"FAIL: {c['mandatoryViolations']} mandatory violation(s); pulumi preview would refuse this stack")
    pack = report.pack
    out: list[str] = [
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>servekit policy audit: {_e(report.stack)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Policy audit of stack <code>{_e(report.stack)}</code></h1>",
        f'<p class="muted">Generated {when} by <code>servekit audit</code>, offline: the Pulumi program ran under '
        "mocks and the same policy objects <code>pulumi preview --policy-pack policies</code> loads judged what it "
        "would create. No cloud account was used.</p>",
        f'<div class="verdict {"pass" if ok else "fail"}">{_e(verdict)}</div>',
        "<h2>Scope</h2><table>",
        f"<tr><th>Policy pack</th><td><code>{_e(pack.name)}</code> v{_e(pack.version)} - {_e(pack.description)}"
        f"</td></tr>",
        f"<tr><th>Pack tags</th><td>{_e(', '.join(pack.tags))}</td></tr>",
        f"<tr><th>Policy config</th><td><code>{_e(report.policy_config)}</code></td></tr>",
        f"<tr><th>Stack file</th><td><code>{_e(report.stack_file)}</code></td></tr>",
        f"<tr><th>Region</th><td>{_e(report.region)}</td></tr>",
        f"<tr><th>Resources evaluated</th><td>{c['resources']} (including the stack, components and providers)"
        "</td></tr>",
        f"<tr><th>Result</th><td>{c['policies']} policies: {c['passed']} passed, {c['failed']} failed, "
        f"{c['notApplicable']} not applicable, {c['disabled']} disabled, {c['unknown']} could not run; "
        f"{c['mandatoryViolations']} mandatory and {c['advisoryViolations']} advisory violation(s)</td></tr>",
        "</table>",
    ]
    for w in report.warnings:
        out.append(f'<p class="warn"><strong>Warning:</strong> {_e(w)}</p>')
    out.append("<h2>Violations</h2>")
    if report.violations:
        out.append('<table class="fixed"><colgroup><col style="width:8%"><col style="width:11%">'
                   '<col style="width:14%"><col style="width:24%"><col style="width:23%"><col style="width:20%">'
                   "</colgroup><tr><th>Severity</th><th>Enforcement</th><th>Policy</th><th>Resource</th>"
                   "<th>Finding</th><th>Remediation</th></tr>")
        for v in report.violations:
            out.append(
                f'<tr><td class="sev-{_e(v.severity)}">{_e(v.severity)}</td><td>{_e(v.enforcement)}</td>'
                f'<td><a href="#{_e(v.policy)}"><code>{_e(v.policy)}</code></a></td>'
                f'<td><code>{_e(v.resource_name)}</code><br><span class="muted">{_e(v.resource_type)}<br>'
                f"{_e(v.urn)}</span></td><td>{_e(v.message)}</td><td>{_e(v.remediation)}</td></tr>")
        out.append("</table>")
    else:
        out.append("<p>None.</p>")
    out += [
        "<h2>Every policy</h2>",
        '<p class="muted"><em>Enforcement</em> is this stack\'s level (mandatory blocks a deployment, advisory '
        "only reports); the pack default is shown where the stack's config changes it. <em>Checked</em> "
        "counts the resources whose properties the policy read; a pass with none means nothing of the kinds it "
        "checks exists in this stack, or its configuration turns it off here. <em>Controls</em> are the framework "
        "controls the policy contributes evidence to, not a claim that the control is met by it alone.</p>",
        '<table class="fixed"><colgroup><col style="width:27%"><col style="width:8%"><col style="width:11%">'
        '<col style="width:11%"><col style="width:8%"><col style="width:16%"><col style="width:19%"></colgroup>',
        "<tr><th>Policy</th><th>Severity</th><th>Enforcement</th><th>Status</th><th>Checked</th>"
        "<th>Controls</th><th>Remediation</th></tr>",
    ]
    for p in _sorted_policies(report):
        enforcement = _e(p.enforcement)
        if p.enforcement != p.default_enforcement:
            enforcement += f'<br><span class="muted">default {_e(p.default_enforcement)}</span>'
        controls = "".join(f"<li>{_e(f)}</li>" for f in p.frameworks)
        notes = "".join(f'<br><span class="muted">{_e(n)}</span>' for n in p.notes)
        config = (f'<br><span class="muted">config: <code>{_e(json.dumps(p.config, sort_keys=True))}</code></span>'
                  if p.config else "")
        out.append(
            f'<tr id="{_e(p.name)}"><td><code>{_e(p.name)}</code> ({_e(p.kind)})<br><strong>'
            f"{_e(p.meta.display_name)}</strong><br>{_e(p.meta.description)}{config}</td>"
            f'<td class="sev-{_e(p.severity)}">{_e(p.severity)}</td><td>{enforcement}</td>'
            f'<td><span class="badge {_e(p.status)}">{_e(_status_text(p))}</span>'
            f"{' (' + str(p.violations) + ')' if p.violations else ''}{notes}</td><td>{len(p.checked)}</td>"
            f"<td><ul>{controls}</ul></td><td>{_e(p.meta.remediation)}<br>"
            f'<a href="{_e(p.meta.url)}">{_e(p.meta.url)}</a></td></tr>')
    out += ["</table>", "<h2>How to reproduce</h2>",
            f"<pre><code>servekit audit --stack {_e(report.stack)} --format html -o audit.html\n"
            f"pulumi preview -s {_e(report.stack)} --policy-pack policies --policy-pack-config "
            f"{_e(report.policy_config)}</code></pre>",
            "</body></html>", ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- sarif


def _rule(p: PolicyResult) -> dict[str, Any]:
    m = p.meta
    level = {"mandatory": "error", "advisory": "warning"}.get(p.enforcement, "none")
    return {
        "id": p.name,
        "name": "".join(part.capitalize() for part in p.name.split("-")),
        "shortDescription": {"text": m.display_name},
        "fullDescription": {"text": m.description},
        "help": {"text": f"Remediation: {m.remediation}\nControls: {'; '.join(p.frameworks)}",
                 "markdown": f"**Remediation:** {m.remediation}\n\n**Controls:**\n\n"
                             + "\n".join(f"- {f}" for f in p.frameworks)},
        "helpUri": m.url,
        "defaultConfiguration": {"level": level, "enabled": p.status != "disabled"},
        "properties": {
            "severity": p.severity, "security-severity": SECURITY_SEVERITY.get(p.severity, "5.0"),
            "enforcementLevel": p.enforcement, "defaultEnforcementLevel": p.default_enforcement, "kind": p.kind,
            "frameworks": list(p.frameworks),
            "tags": ["security", "compliance", *m.tags, *(f"{c.framework} {c.reference}" for c in m.controls)],
            "status": p.status,
        },
    }


def render_sarif(report: AuditReport) -> dict[str, Any]:
    """SARIF 2.1.0: one run, a rule per policy, a result per violation (error = mandatory, warning = advisory)."""
    rules = [_rule(p) for p in report.policies]
    index = {p.name: i for i, p in enumerate(report.policies)}
    uri = report.stack_uri or report.stack_file or f"stacks/Pulumi.{report.stack}.yaml"
    results: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for v in report.violations:
        digest = hashlib.sha256(f"{v.policy}\n{v.urn}\n{v.message}".encode()).hexdigest()[:32]
        seen[digest] = seen.get(digest, 0) + 1
        results.append({
            "ruleId": v.policy,
            "ruleIndex": index[v.policy],
            "level": "error" if v.mandatory else "warning",
            "message": {"text": f"{v.resource_name} ({v.resource_type}): {v.message}"},
            "locations": [{
                "physicalLocation": {"artifactLocation": {"uri": uri}, "region": {"startLine": 1}},
                "logicalLocations": [{"fullyQualifiedName": v.urn, "name": v.resource_name, "kind": "resource"}],
            }],
            # Code scanning deduplicates alerts by this hash; every violation points at the stack file's first
            # line, so the hash is the policy + resource (+ message), not the line's text.
            "partialFingerprints": {"primaryLocationLineHash": f"{digest}:{seen[digest]}"},
            "properties": {"severity": v.severity, "enforcementLevel": v.enforcement, "resourceType": v.resource_type,
                           "urn": v.urn, "frameworks": list(v.frameworks), "remediation": v.remediation},
        })
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "servekit-audit", "fullName": f"servekit audit (CrossGuard pack {report.pack.name})",
                "version": report.pack.version, "semanticVersion": report.pack.version,
                "informationUri": "https://www.pulumi.com/docs/insights/policy/", "rules": rules,
            }},
            "automationDetails": {"id": f"servekit-audit/{report.stack}/"},
            "invocations": [{"executionSuccessful": True, "exitCode": report.exit_code,
                             "toolExecutionNotifications": [{"level": "warning", "message": {"text": w}}
                                                            for w in report.warnings]}],
            "results": results,
            "properties": {"stack": report.stack, "region": report.region, "policyConfig": report.policy_config,
                           "stackFile": report.stack_file, "summary": report.counts()},
        }],
    }


# --------------------------------------------------------------------------- the command


def render(report: AuditReport, fmt: Format) -> str:
    if fmt is Format.JSON:
        return json.dumps(report.to_json(), indent=2) + "\n"
    if fmt is Format.SARIF:
        return json.dumps(render_sarif(report), indent=2) + "\n"
    if fmt is Format.MD:
        return render_markdown(report)
    if fmt is Format.HTML:
        return render_html(report)
    buf = io.StringIO()
    render_text(report, Console(file=buf, width=160, highlight=False, force_terminal=False, color_system=None))
    return buf.getvalue()


def _warn(lines: Iterable[str]) -> None:
    for w in lines:
        err_console.print(f"[yellow]warning:[/] {w}", soft_wrap=True)


def audit(
    stack: Annotated[str, typer.Option("--stack", "-s", help="Stack name (stacks/Pulumi.<stack>.yaml).")],
    fmt: Annotated[Format, typer.Option("--format", "-f", help="Report format.")] = Format.TEXT,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Write the report to FILE.")] = None,
    policy_config: Annotated[Path | None, typer.Option(
        "--policy-config", help="A --policy-pack-config file (default policies/config/<stack>.json).")] = None,
    stacks_dir_opt: Annotated[Path | None, typer.Option("--stacks-dir", hidden=True)] = None,
) -> None:
    """Check a stack against the policy pack offline, as `pulumi preview --policy-pack policies` would.

    Exits 1 (after writing the report) when a mandatory policy is violated.
    """
    from servekit.audit import audit_stack

    if output is not None:
        check_output_file(output, "-o")
    with err_console.status(f"auditing stack {stack} (planning offline, then running the policy pack)",
                            spinner="dots"):
        report = audit_stack(stack, stacks_dir(stacks_dir_opt), policy_config=policy_config)
    _warn(report.warnings)
    if output is not None:
        try:
            output.parent.mkdir(parents=True, exist_ok=True)
            output.write_text(render(report, fmt), encoding="utf-8")
        except OSError as e:
            raise UserError(f"cannot write the report: {e.strerror or e}", path="-o", given=str(output)) from None
        err_console.print(f"wrote {output} ({fmt.value}); {report.summary_line()}", soft_wrap=True)
    elif fmt is Format.TEXT:
        render_text(report, console)
    else:
        sys.stdout.write(render(report, fmt))
    if report.exit_code:
        names = sorted({v.policy for v in report.mandatory_violations})
        raise CheckFailed(f"stack {report.stack}: {len(report.mandatory_violations)} mandatory policy violation(s) "
                          f"({', '.join(names)}); pulumi preview --policy-pack policies would refuse it")


def register(app: typer.Typer) -> None:
    app.command("audit")(audit)
