"""servekit.vllm_flags against the pinned vLLM itself.

The oracle is vLLM 0.33.0's own `vllm serve` parser, run in .venv-vllm through scripts/vllm_probe.py.
Tests that need it FAIL (never skip) when that venv is missing: CI creates it with
scripts/ensure_vllm_venv.sh, and a silently skipped oracle would let the snapshot rot.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from servekit import vllm_flags
from servekit.errors import EnvironmentMissing, UserError
from servekit.vllm_flags import check_args, load_snapshot, metric_names, parse_with_vllm

ORIGIN = "stacks/Pulumi.prod.yaml: models[0].extraEngineArgs"

# A realistic engine-argument list, as the field report's vLLM settings would produce it.
REALISTIC = [
    "--model", "meta-llama/Llama-3.1-8B-Instruct",
    "--served-model-name", "llama-8b",
    "--tensor-parallel-size", "2",
    "--max-model-len", "8192",
    "--gpu-memory-utilization", "0.92",
    "--max-num-seqs", "32",
    "--kv-cache-dtype", "fp8",
    "--enable-prefix-caching",
    "--quantization", "awq",
    "--port", "8000",
]  # fmt: skip

# Lists both checkers should accept; each exercises one parsing rule vLLM has.
ACCEPTED = [
    REALISTIC,
    ["m", "--max_num_seqs=4", "-tp=2", "--compilation-config.mode", "3"],  # _ spelling, =, dotted JSON
    ["m", "-O3"],  # vLLM rewrites -O3 to --optimization-level 3
    ["m", "--load-format", "runai_streamer"],
    ["m", "--enable-lora", "--lora-modules", "a=/adapters/a", "b=/adapters/b", "--max-loras", "2"],
    ["m", "--api-key", "k1", "k2", "--host", "0.0.0.0"],
    ["m", "--moe-backend", "Triton"],  # normalised to 'triton' before the choice check
    ["--port", "8000", "m"],  # the model may come after options
    ["m", "--max-model-len", "8k", "--disable-prefix-caching"],
]

# Lists both must reject. Abbreviations are left out on purpose: argparse takes a unique prefix,
# check_args refuses it (a later flag sharing the prefix would change its meaning).
REJECTED = [
    ["m", "--swap-space", "4"],
    ["m", "--kv-cache-dtype", "fp7"],
    ["m", "--max-num-seqs", "lots"],
    ["m", "--port"],
    ["m", "--dtype", "float8"],
    ["m", "--quantization", "awqq"],
    ["m", "--load-format", "bogus"],
    ["--served-model-name", "x", "--port", "8000"],
    ["m", "--enable-prefix-caching=true"],
    ["m", "--max-model-len", "1.5K"],  # vLLM forbids decimals with binary suffixes
    ["m", "extra"],
    ["m", "--served-model-name"],
    ["m", "--max-lora-rank", "7"],
    ["m", "-cc", "3"],
    ["m", "--gpu-memory-utilization", "high"],
]


def _rejection(args: list[str]) -> str:
    with pytest.raises(UserError) as info:
        check_args(args, origin=ORIGIN)
    return str(info.value)


# ------------------------------------------------------------------------------ check_args alone


def test_realistic_list_is_accepted() -> None:
    check_args(REALISTIC, origin=ORIGIN)


def test_removed_flag_is_named_with_version_and_origin() -> None:
    message = _rejection(["--model", "m", "--swap-space", "4"])
    assert message.startswith(ORIGIN + ": ")
    assert "vLLM 0.33.0 does not accept --swap-space" in message


def test_typo_gets_a_close_match() -> None:
    message = _rejection(["m", "--gpu-memory-utilisation", "0.9"])
    assert "does not accept --gpu-memory-utilisation" in message
    assert "did you mean --gpu-memory-utilization?" in message


def test_value_outside_known_kv_cache_dtypes_is_rejected() -> None:
    message = _rejection(["m", "--kv-cache-dtype", "fp7"])
    assert "--kv-cache-dtype 'fp7'" in message
    assert "did you mean 'fp8'?" in message


def test_bad_argparse_choice_lists_the_choices() -> None:
    message = _rejection(["m", "--dtype", "float8"])
    assert "--dtype must be one of" in message
    assert "bfloat16" in message and "'float8'" in message


def test_non_integer_for_an_int_flag() -> None:
    message = _rejection(["m", "--tensor-parallel-size", "two"])
    assert "--tensor-parallel-size/-tp value is not an integer" in message
    assert "'two'" in message


def test_non_number_for_a_float_flag() -> None:
    assert "is not a number" in _rejection(["m", "--gpu-memory-utilization", "most"])


def test_missing_value_at_the_end_and_before_the_next_flag() -> None:
    assert "--port needs a value" in _rejection(["m", "--port"])
    assert "--max-num-seqs needs a value" in _rejection(["m", "--max-num-seqs", "--port", "8000"])


def test_negative_number_is_a_value_not_a_flag() -> None:
    # argparse treats "-1" as a value when the parser has no numeric-looking options.
    check_args(["m", "--max-model-len", "-1"], origin=ORIGIN)


def test_abbreviation_is_refused_with_the_full_name() -> None:
    message = _rejection(["m", "--max-model", "4096"])
    assert "spell out --max-model-len" in message


def test_switch_takes_no_value() -> None:
    assert "is a switch" in _rejection(["m", "--enable-prefix-caching=yes"])


def test_origin_becomes_file_and_path_of_the_user_error() -> None:
    with pytest.raises(UserError) as info:
        check_args(["m", "--swap-space", "4"], origin=ORIGIN)
    assert info.value.file == "stacks/Pulumi.prod.yaml"
    assert info.value.path == "models[0].extraEngineArgs"


def test_snapshot_is_the_serve_parser_not_only_engine_args() -> None:
    # These come from the OpenAI server's FrontendArgs / LoRA options, not AsyncEngineArgs.
    flags = load_snapshot().flags
    for name in ("--served-model-name", "--port", "--enable-lora", "--lora-modules", "--max-loras", "--api-key"):
        assert name in flags, name
    assert flags["--port"].default == 8000
    assert "--swap-space" not in load_snapshot().by_option


def test_image_tag_and_install_script_follow_the_pin() -> None:
    assert f"vllm/vllm-openai:v{vllm_flags.VLLM_VERSION}" == vllm_flags.VLLM_IMAGE
    script = (vllm_flags.REPO_ROOT / "scripts" / "ensure_vllm_venv.sh").read_text()
    assert re.search(rf'^VLLM_VERSION="{re.escape(vllm_flags.VLLM_VERSION)}"', script, re.M)


def test_metric_names_include_the_ones_the_sla_rules_use() -> None:
    names = set(metric_names())
    for name in (
        "vllm:num_requests_running",
        "vllm:num_requests_waiting",
        "vllm:kv_cache_usage_perc",
        "vllm:time_to_first_token_seconds",
        "vllm:e2e_request_latency_seconds",
    ):
        assert name in names, name
    series = set(vllm_flags.metric_series())
    assert "vllm:prompt_tokens_total" in series  # counters are scraped with _total
    assert "vllm:e2e_request_latency_seconds_bucket" in series


def test_missing_vllm_interpreter_is_an_environment_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SERVEKIT_VLLM_PYTHON", str(tmp_path / "no-such-python"))
    with pytest.raises(EnvironmentMissing, match=r"no-such-python is missing.*ensure_vllm_venv\.sh"):
        parse_with_vllm([["m"]])


# ------------------------------------------------------------------- against the real vLLM parser


@pytest.fixture(scope="module")
def probe_snapshot() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(vllm_flags.run_probe("snapshot"))
    return out


@pytest.fixture(scope="module")
def probe_metrics() -> dict[str, Any]:
    out: dict[str, Any] = json.loads(vllm_flags.run_probe("metrics"))
    return out


@pytest.fixture(scope="module")
def oracle() -> dict[tuple[str, ...], str | None]:
    lists = ACCEPTED + REJECTED
    return dict(zip((tuple(a) for a in lists), parse_with_vllm(lists), strict=True))


def test_private_platform_hook_still_works() -> None:
    """The probe relies on vllm.platforms._current_platform (private); fail loudly if it moves."""
    code = (
        "import vllm.platforms as p\n"
        "from vllm.platforms.cpu import CpuPlatform\n"
        "assert hasattr(p, '_current_platform'), 'vllm.platforms._current_platform is gone'\n"
        "p._current_platform = CpuPlatform()\n"
        "assert p.current_platform.is_cpu(), p.current_platform\n"
        "print('ok')\n"
    )
    python = vllm_flags.vllm_python()
    assert python.exists(), f"{python} missing: run bash scripts/ensure_vllm_venv.sh"
    proc = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip().endswith("ok")


def test_committed_flag_snapshot_matches_installed_vllm(probe_snapshot: dict[str, Any]) -> None:
    committed = json.loads(vllm_flags.FLAGS_FILE.read_text())
    assert probe_snapshot["vllmVersion"] == vllm_flags.VLLM_VERSION
    added = sorted(set(probe_snapshot["flags"]) - set(committed["flags"]))
    removed = sorted(set(committed["flags"]) - set(probe_snapshot["flags"]))
    assert not added and not removed, f"flags added {added}, removed {removed}; regenerate the file"
    assert probe_snapshot == committed, f"regenerate with: {committed['generatedBy']}"


def test_committed_metrics_match_installed_vllm(probe_metrics: dict[str, Any]) -> None:
    committed = json.loads(vllm_flags.METRICS_FILE.read_text())
    assert sorted(probe_metrics["metrics"]) == sorted(committed["metrics"])
    assert probe_metrics == committed, f"regenerate with: {committed['generatedBy']}"


def test_snapshot_shows_runai_streamer_load_format(probe_snapshot: dict[str, Any]) -> None:
    assert "runai_streamer" in probe_snapshot["flags"]["--load-format"]["knownValues"]


@pytest.mark.parametrize("args", ACCEPTED, ids=lambda a: " ".join(a)[:60])
def test_real_parser_accepts_what_check_args_accepts(
    args: list[str], oracle: dict[tuple[str, ...], str | None]
) -> None:
    assert oracle[tuple(args)] is None, oracle[tuple(args)]
    check_args(args, origin=ORIGIN)


@pytest.mark.parametrize("args", REJECTED, ids=lambda a: " ".join(a)[:60])
def test_real_parser_rejects_what_check_args_rejects(
    args: list[str], oracle: dict[tuple[str, ...], str | None]
) -> None:
    assert oracle[tuple(args)] is not None, f"vLLM accepted {args}"
    with pytest.raises(UserError):
        check_args(args, origin=ORIGIN)


def test_real_parser_reports_argparse_message(oracle: dict[tuple[str, ...], str | None]) -> None:
    assert oracle[("m", "--swap-space", "4")] == "unrecognized arguments: --swap-space 4"
