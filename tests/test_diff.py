"""``servekit diff`` on a temporary git repository with two commits.

The repository is a copy of this one (its tracked and not-ignored files, without tests/ benchmarks/
docs/ .github/), committed as the base; a second commit then edits the stack files:

* ``dev``: the model ``chat`` moves from L4 to A10G GPUs, and a second model ``summarize`` is added;
* ``prod``: ``servekit:slaGate: false``, which the policy pack's ``sla-gate-required`` refuses on prod;
* ``regulated``: untouched;
* ``staging``: a new stack file (a copy of dev's base) that does not exist at the base.

Expected values come from the edits themselves and the data files (the A10G instance is the
catalog's ``g5`` family; the removed gate is the policy ``sla-gate-required``), never from running the
diff code. All stacks are planned once per side (two subprocesses at once) in a module fixture.
"""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from servekit.cli import app
from servekit.cli._common import run_app
from servekit.diff import (
    MAX_MARKDOWN,
    UNCHANGED_MARKER,
    Snapshot,
    StackDiff,
    compare,
    diff_stacks,
    flatten,
    marker,
    to_markdown,
)

ROOT = Path(__file__).resolve().parents[1]
SKIP_DIRS = ("tests/", "benchmarks/", "docs/", ".github/")
ADDED_MODEL = """    - name: summarize
      model: qwen2.5-7b-instruct
      quantization: awq
      maxContext: 8192
      gpus: [l4]
      replicas: 1
      purchase: {option: on-demand}
      sla: {p95E2eSeconds: 10, concurrencyPerReplica: 8, workload: chat}
"""


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def make_repo(dest: Path) -> Path:
    files = subprocess.run(["git", "-C", str(ROOT), "ls-files", "-co", "--exclude-standard", "-z"], check=True,
                           capture_output=True, text=True).stdout.split("\0")
    for f in files:
        src = ROOT / f
        if not f or f.startswith(SKIP_DIRS) or not src.is_file():
            continue
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / f)
    git(dest, "init", "-q", "-b", "main")
    git(dest, "config", "user.email", "test@example.com")
    git(dest, "config", "user.name", "servekit tests")
    git(dest, "add", "-A")
    git(dest, "commit", "-q", "-m", "base")
    return dest


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path.name}: {old!r} occurs {text.count(old)} times"
    path.write_text(text.replace(old, new))


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = make_repo(tmp_path_factory.mktemp("diffrepo"))
    stacks = repo / "stacks"
    shutil.copy(stacks / "Pulumi.dev.yaml", stacks / "Pulumi.staging.yaml")
    shutil.copy(repo / "policies" / "config" / "dev.json", repo / "policies" / "config" / "staging.json")
    dev = stacks / "Pulumi.dev.yaml"
    edit(dev, "gpus: [l4]", "gpus: [a10g]")
    dev.write_text(dev.read_text().rstrip("\n") + "\n" + ADDED_MODEL)
    edit(stacks / "Pulumi.prod.yaml", "servekit:slaGate: true", "servekit:slaGate: false")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "dev on A10G with a second model; prod without the SLA gate; staging")
    return repo


@pytest.fixture(scope="module")
def diffs(repo: Path) -> dict[str, StackDiff]:
    result = {d.stack: d for d in diff_stacks(["dev", "prod", "regulated", "staging"], "HEAD~1", repo)}
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1, "the base worktree was left behind"
    assert not (repo / ".git" / "worktrees").exists() or not any((repo / ".git" / "worktrees").iterdir())
    return result


@pytest.fixture(scope="module")
def md(diffs: dict[str, StackDiff]) -> dict[str, str]:
    return {s: to_markdown(d) for s, d in diffs.items()}


def section(text: str, title: str) -> str:
    """The Markdown from ``#### title`` to the next ``####`` heading."""
    start = text.index(f"#### {title}")
    nxt = text.find("\n#### ", start + 1)
    return text[start: nxt if nxt >= 0 else len(text)]


def test_changed_gpu_type_appears(diffs: dict[str, StackDiff], md: dict[str, str]) -> None:
    d = diffs["dev"]
    assert d.status == "changed"
    chat = next(p for p in d.placements if p.name == "chat")
    fields = {c.field: (c.before, c.after) for c in chat.changes}
    assert fields["GPU type"] == ("l4", "a10g")
    before, after = fields["instance type"]
    assert before.startswith("g6.") and after.startswith("g5."), (before, after)  # L4 is g6, A10G is g5
    placements = section(md["dev"], "Placements")
    assert re.search(r"\| \*\*chat\*\* \| GPU type \| `l4` \| `a10g` \|", placements)
    assert "GPU chat: l4 → a10g" in md["dev"].split("####")[0], "the headline names the GPU change"
    # an A10G node group comes; the L4 one stays for the added model
    assert any(r.type == "aws:eks/nodeGroup:NodeGroup" and "a10g" in r.name for r in d.added)
    pools = {p.name: p for p in d.pools}
    assert pools["a10g-on-demand"].kind == "added"
    assert [(c.field, c.before, c.after) for c in pools["l4-on-demand"].changes] == [("models", "chat", "summarize")]
    assert "| ➕ `a10g-on-demand` | added |" in placements


def test_added_model_appears(diffs: dict[str, StackDiff], md: dict[str, str]) -> None:
    d = diffs["dev"]
    added = [p for p in d.placements if p.kind == "added"]
    assert [p.name for p in added] == ["summarize"]
    assert "qwen2.5-7b-instruct (awq)" in added[0].summary
    assert "| ➕ **summarize** | added |" in section(md["dev"], "Placements")
    assert "models +summarize" in md["dev"].split("####")[0]
    assert any(r.type == "servekit:vllm_service:VllmService" and r.name == "summarize" for r in d.added)
    assert "servekit:vllm_service:VllmService" in section(md["dev"], "Resources")
    # a second node group costs money: the cost goes up by at least its GPU node
    assert d.cost_before is not None and d.cost_after is not None and d.cost_after > d.cost_before
    assert re.search(r"cost \+\$[\d,]+/month \(\+\d+\.\d%\)", md["dev"])


def test_policy_regression_appears(diffs: dict[str, StackDiff], md: dict[str, str]) -> None:
    d = diffs["prod"]
    if d.policy_note:
        pytest.fail(f"policy verdicts were not compared: {d.policy_note}")
    assert [v["policy"] for v in d.new_violations] == ["sla-gate-required"]
    assert d.new_violations[0]["enforcement"] == "mandatory"  # policies/config/prod.json: "all": "mandatory"
    policy = section(md["prod"], "Policy verdicts")
    assert "**New violations (1)**" in policy
    assert "| `sla-gate-required` | mandatory |" in policy
    assert "**1 new policy violation(s)** (1 mandatory)" in md["prod"]
    # the policy section comes before the resource sections (most important first)
    assert md["prod"].index("#### Policy verdicts") < md["prod"].index("#### Resources")
    assert any(r.type == "kubernetes:batch/v1:Job" for r in d.removed), "the gate Job goes away"


def test_unchanged_stack_says_so(diffs: dict[str, StackDiff], md: dict[str, str]) -> None:
    d = diffs["regulated"]
    assert d.status == "unchanged"
    assert not (d.placements or d.added or d.removed or d.changed or d.new_violations)
    text = md["regulated"]
    assert text.startswith(marker("regulated") + "\n" + UNCHANGED_MARKER + "\n")
    assert "✅ **No changes**" in text
    assert d.policy_note is None and "policy verdicts" in text
    assert UNCHANGED_MARKER not in md["dev"] and UNCHANGED_MARKER not in md["prod"]


def test_new_stack_is_all_added(diffs: dict[str, StackDiff], md: dict[str, str]) -> None:
    d = diffs["staging"]
    assert d.status == "new" and not d.base.exists
    assert not d.removed and not d.changed
    assert d.head.plan is not None and len(d.added) == len(d.head.plan["resources"])
    assert [p.kind for p in d.placements] == ["added"]
    assert d.cost_before == 0.0 and d.cost_after is not None and d.cost_after > 0
    assert "**new stack**" in md["staging"]


def test_property_diffs_keep_secrets_redacted(diffs: dict[str, StackDiff], md: dict[str, str]) -> None:
    for stack, d in diffs.items():
        for side in (d.base, d.head):
            assert "offline-placeholder-hf-token" not in json.dumps(side.plan), stack
        assert "offline-placeholder-hf-token" not in md[stack]
    # the dev Deployment's vLLM flags did not move (same model, same SLA), but its node selector did
    dev = diffs["dev"]
    deploy = next(c for c in dev.changed if c.ref.type == "kubernetes:apps/v1:Deployment" and c.ref.name.startswith(
        "chat"))
    paths = {p.path: (p.before, p.after) for p in deploy.properties}
    selector = 'spec.template.spec.nodeSelector["servekit.io/gpu"]'
    assert paths[selector] == ("l4", "a10g")
    assert f"- {selector}: l4\n+ {selector}: a10g" in md["dev"]


def test_flatten_compares_inside_json_strings() -> None:
    doc = {"policy": json.dumps({"Statement": [{"Effect": "Deny", "Action": "s3:*"}]}), "tags": {"a.b": "1"},
           "args": ["--x", "1"], "empty": {}}
    assert flatten(doc) == {"policy<json>.Statement[0].Effect": "Deny", "policy<json>.Statement[0].Action": "s3:*",
                            'tags["a.b"]': "1", "args": ["--x", "1"], "empty": {}}


def _big(plan: dict[str, Any], n: int) -> dict[str, Any]:
    big = copy.deepcopy(plan)
    template = next(r for r in big["resources"] if r["type"] == "kubernetes:apps/v1:Deployment")
    for i in range(n):
        r = copy.deepcopy(template)
        r["name"], r["urn"] = f"extra-{i}", template["urn"] + f"-extra-{i}"
        big["resources"].append(r)
    for r in big["resources"]:
        r["inputs"] = {**r["inputs"], "padding": ["x" * 50] * 5, "note": "y" * 400}
    return big


def test_big_diff_fits_one_comment(diffs: dict[str, StackDiff]) -> None:
    base = diffs["prod"].head
    assert base.plan is not None
    violations = [{"policy": f"p{i}", "resource": f"r{i}", "enforcement": "advisory", "severity": "low",
                   "message": "m" * 300} for i in range(500)]
    head = Snapshot(label="big", exists=True, plan=_big(base.plan, 3000), cost=base.cost,
                    policy={"violations": violations})
    d = compare("prod", base, head)
    assert len(d.added) == 3000 and len(d.changed) >= 80
    text = to_markdown(d)
    assert len(text) < 64_000 and len(text) <= MAX_MARKDOWN
    assert text.count("<details>") == text.count("</details>")
    assert text.count("```") % 2 == 0
    assert "more changed resources not shown" in text or "more (see `--json`)" in text
    assert text.index("#### Policy verdicts") < text.index("#### Resources")
    assert "_… and 440 more rows (see `--json`)._" in text  # 500 violations, 60 rows shown


def test_cli_markdown_and_errors(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_app(app, ["diff", "--stack", "dev", "--base", "no-such-ref", "--repo", str(repo)]) == 2
    assert "no such git revision" in capsys.readouterr().err
    assert run_app(app, ["diff", "--stack", "nope", "--base", "HEAD~1", "--repo", str(repo), "--markdown"]) == 2
    assert "no such stack at either revision" in capsys.readouterr().err
    assert run_app(app, ["diff", "--stack", "regulated", "--base", "HEAD~1", "--repo", str(repo),
                         "--markdown"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("<!-- servekit-diff:regulated -->") and "No changes" in out
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_worktree_is_removed_when_planning_fails(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import servekit.diff as diff_mod

    seen: list[Path] = []

    def boom(root: Path, stacks: Any, label: str) -> dict[str, Snapshot]:
        seen.append(root)
        raise RuntimeError("planning blew up")

    monkeypatch.setattr(diff_mod, "take_snapshots", boom)
    with pytest.raises(RuntimeError, match="planning blew up"):
        diff_stacks(["dev"], "HEAD~1", repo)
    base_roots = [r for r in seen if r != repo.resolve()]
    assert base_roots, "the base was planned from a worktree"
    assert not any(r.exists() for r in base_roots)
    assert git(repo, "worktree", "list", "--porcelain").count("worktree ") == 1


def test_removed_stack_is_all_removed(diffs: dict[str, StackDiff]) -> None:
    base = diffs["regulated"].head
    assert base.plan is not None
    d = compare("regulated", base, Snapshot(label="working tree", exists=False))
    assert d.status == "removed"
    assert len(d.removed) == len(base.plan["resources"]) and not d.added and not d.changed
    assert [p.kind for p in d.placements] == ["removed"]
    assert d.cost_after == 0.0 and d.cost_before is not None and d.cost_before > 0
    assert "**stack removed**" in to_markdown(d)
