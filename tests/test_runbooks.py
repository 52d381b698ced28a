"""docs/runbooks.md has a section for every alert servekit/alert_rules.py emits, and nothing stale.

The alert list is derived from the code: the rule groups of every repository stack plus a stack
built to switch on every conditional alert (a TTFT SLA, a model with replicas). The runbook links of
the CloudWatch alarms (components/monitoring.py) must land on a section too.
"""

from __future__ import annotations

import re
from pathlib import Path

from components.monitoring import container_insights_alarms, promql_alarms
from servekit.alert_rules import rule_groups
from servekit.catalog import REPO_ROOT
from servekit.spec import DeploymentSpec
from servekit.stackfile import available_stacks, resolve_stack

RUNBOOKS = REPO_ROOT / "docs" / "runbooks.md"
LINK = re.compile(r"docs/runbooks\.md#([a-z0-9-]+)")

# Everything conditional on: TTFT SLA (TTFT alerts), replicas > 0 (metrics-absent), error budget > 0.
EVERYTHING = DeploymentSpec.model_validate({
    "stack": "runbooks", "tags": {"owner": "o@example.com", "costCenter": "c", "dataClassification": "internal"},
    "models": [{"name": "m", "model": "qwen2.5-7b-instruct", "replicas": 2,
                "sla": {"p95E2eSeconds": 5, "p95TtftSeconds": 1, "concurrencyPerReplica": 8, "maxErrorRate": 0.02}}],
})


def specs() -> list[DeploymentSpec]:
    return [EVERYTHING, *(resolve_stack(s).spec for s in available_stacks())]


def alerts() -> dict[str, set[str]]:
    """alert name -> the severities it is emitted with, over every spec."""
    out: dict[str, set[str]] = {}
    for spec in specs():
        for group in rule_groups(spec):
            for rule in group["rules"]:
                if "alert" in rule:
                    out.setdefault(rule["alert"], set()).add(rule["labels"]["severity"])
                    assert rule["annotations"]["runbook_url"] == f"docs/runbooks.md#{rule['alert'].lower()}"
    return out


def anchor(heading: str) -> str:
    """GitHub's heading anchor: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", heading.strip().lower()))


def sections(text: str) -> dict[str, str]:
    """anchor -> heading of every level-2 section."""
    return {anchor(h): h for h in re.findall(r"^## (.+)$", text, flags=re.M)}


def index_rows(text: str) -> dict[str, tuple[str, str]]:
    """alert -> (severities, CloudWatch column) from the index table."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 3 and cells[0].startswith("Servekit"):
            rows[cells[0]] = (cells[1], cells[2])
    return rows


def test_every_emitted_alert_has_a_runbook_section_and_none_is_stale() -> None:
    emitted = alerts()
    assert len(emitted) >= 16  # the alert set as of writing: a large drop means the derivation broke
    text = RUNBOOKS.read_text(encoding="utf-8")
    found = sections(text)
    missing = sorted(a for a in emitted if a.lower() not in found)
    assert not missing, f"docs/runbooks.md lacks sections for {missing}"
    stale = sorted(h for h in found.values() if h.startswith("Servekit") and h not in emitted)
    assert not stale, f"docs/runbooks.md has sections for alerts the code no longer emits: {stale}"
    for name in emitted:  # each section says something, not just a heading
        body = text.split(f"## {name}\n", 1)[1].split("\n## ", 1)[0]
        assert "**What it means.**" in body and ("**Act.**" in body or "**Check and act.**" in body), name


def test_the_index_lists_every_alert_with_its_severities_and_cloudwatch_twin() -> None:
    emitted = alerts()
    rows = index_rows(RUNBOOKS.read_text(encoding="utf-8"))
    assert set(rows) == set(emitted)
    for name, severities in emitted.items():
        assert rows[name][0] == ", ".join(sorted(severities)), name
    # CloudWatch alarms -> the section they link to; the index's last column must name exactly them.
    twins: dict[str, set[str]] = {}
    for spec in specs():
        prefix = f"servekit-{spec.stack}-"
        models = [md.name for md in spec.models]
        for alarm_name, description in [(a.name, a.description) for a in promql_alarms(spec)] + [
                (a.name, a.description) for a in container_insights_alarms(spec, f"servekit-{spec.stack}")]:
            (target,) = LINK.findall(description)
            rest = alarm_name.removeprefix(prefix)
            for m in models:
                if rest.startswith(f"{m}-"):
                    rest = "<m>-" + rest.removeprefix(f"{m}-")
            twins.setdefault(target, set()).add(f"`{rest}`")
    for name in emitted:
        listed = {c.strip() for c in rows[name][1].split(",") if c.strip()}
        assert listed == twins.get(name.lower(), set()), name


def test_every_runbook_link_in_the_code_resolves() -> None:
    found = sections(RUNBOOKS.read_text(encoding="utf-8"))
    links = set()
    for path in (REPO_ROOT / "components" / "monitoring.py", REPO_ROOT / "servekit" / "alert_rules.py"):
        links |= set(LINK.findall(Path(path).read_text(encoding="utf-8")))
    for spec in specs():
        for a in promql_alarms(spec):
            links |= set(LINK.findall(a.description))
        for c in container_insights_alarms(spec, "c"):
            links |= set(LINK.findall(c.description))
    assert links, "no runbook links found: the scan is broken"
    assert sorted(link for link in links if link not in found) == []
