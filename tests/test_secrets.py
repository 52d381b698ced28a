"""A known HF token never appears in plan --json, manifests, or any command's stdout/stderr or files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import servekit.stackfile
from servekit.cli import app
from servekit.cli._common import run_app
from servekit.manifests import kubernetes_objects, write_manifests
from servekit.offline import HF_TOKEN_KEY, run_program, stack_config

TOKEN = "hf_KNOWNsecretTOKEN_7f3a9c1e5b"
REPO = Path(__file__).resolve().parents[1]

# prod's two gated Llama models (both need the token) in a stack file that also holds the token in
# plain text - the worst case a user can produce.
STACK = textwrap.dedent(f"""\
    config:
      aws:region: us-east-1
      servekit:tags: {{owner: t@example.com, costCenter: cc-1, dataClassification: confidential}}
      servekit:network: {{azCount: 2, egress: nat}}
      servekit:hfToken: {TOKEN}
      servekit:models:
        - name: extract
          model: llama-3.1-8b-instruct
          gpus: [l4, a10g, h100]
          loraAdapters: [{{name: hr, source: "hf://acme/hr-lora"}}]
          sla: {{p95E2eSeconds: 5, concurrencyPerReplica: 8}}
    """)


@pytest.fixture
def stacks(tmp_path: Path) -> Path:
    d = tmp_path / "stacks"
    d.mkdir()
    (d / "Pulumi.leak.yaml").write_text(STACK)
    return d


def files_text(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())


def test_the_token_reaches_the_program_and_leaves_no_trace(stacks: Path, tmp_path: Path) -> None:
    _, config, _ = stack_config("leak", stacks)
    config[HF_TOKEN_KEY] = TOKEN  # as `pulumi up` would hand the decrypted secret to the program
    plan = run_program(config, "leak", secret_keys=(HF_TOKEN_KEY,))
    secrets = plan.of_type("kubernetes:core/v1:Secret")
    assert [s.inputs["metadata"]["name"] for s in secrets] == ["hf-token"]  # it did reach the components
    assert secrets[0].inputs["stringData"] == "[secret]"
    assert TOKEN not in json.dumps(plan.to_json())
    out = tmp_path / "manifests"
    paths = write_manifests(kubernetes_objects(plan.resources), out)
    assert any(p.name == "secret-hf-token.yaml" for p in paths)
    assert TOKEN not in files_text(out)


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", "from servekit.cli import main; main()", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=600, check=False)


def test_plan_and_manifests_processes_never_print_or_write_it(stacks: Path, tmp_path: Path) -> None:
    env = {**os.environ, "SERVEKIT_STACKS_DIR": str(stacks)}
    out = tmp_path / "m"
    runs = [
        _run(["plan", "--stack", "leak"], env),
        _run(["plan", "--stack", "leak", "--json"], env),
        _run(["manifests", "--stack", "leak", "-o", str(out), "--check", "--json"], env),
    ]
    for r in runs:
        assert r.returncode == 0, r.stderr
        assert TOKEN not in r.stdout and TOKEN not in r.stderr, r.args
    assert json.loads(runs[1].stdout)["stack"] == "leak"
    assert "plain text" in runs[0].stderr + runs[0].stdout  # the user is told to use --secret
    assert TOKEN not in files_text(out)


def test_every_other_stack_command_never_prints_or_writes_it(stacks: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    real = servekit.stackfile.stack_path
    monkeypatch.setattr(servekit.stackfile, "stack_path",
                        lambda stack, stacks_dir=servekit.stackfile.STACKS_DIR: (
                            stacks / f"Pulumi.{stack}.yaml" if stack == "leak" else real(stack, stacks_dir)))
    rules = tmp_path / "rules"
    commands = [["rules", "--stack", "leak", "-o", str(rules)], ["cost", "--stack", "leak", "--json"],
                ["cost", "--stack", "leak"]]
    for argv in commands:
        code = run_app(app, argv)
        captured = capsys.readouterr()
        assert code == 0, (argv, captured.err)
        assert TOKEN not in captured.out and TOKEN not in captured.err, argv
    assert TOKEN not in files_text(rules)
