"""Mistakes real users make on the command line: each exits with its code, one clear line, no traceback."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from servekit.cli import app
from servekit.cli._common import run_app
from servekit.stackfile import read_stack_config


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = run_app(app, list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_a_stack_file_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.dev.yaml").mkdir()
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{tmp_path / 'Pulumi.dev.yaml'}: is a directory" in err


def test_a_stack_file_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "Pulumi.dev.yaml").write_bytes(b"\xff\xfe config:\n")
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert f"{tmp_path / 'Pulumi.dev.yaml'}: not valid YAML: not UTF-8" in err


def test_a_repeated_model_name_names_the_models_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, cfg = read_stack_config("dev")
    cfg = copy.deepcopy(cfg)
    cfg["servekit:models"].append(copy.deepcopy(cfg["servekit:models"][0]))
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump({"config": cfg}))
    code, out, err = run(capsys, "plan", "--stack", "dev", "--stacks-dir", str(tmp_path))
    assert code == 2 and out == "" and "Traceback" not in err
    assert (f"{tmp_path / 'Pulumi.dev.yaml'}: config.servekit:models: model names must be unique in a stack; "
            "repeated: chat") in err
