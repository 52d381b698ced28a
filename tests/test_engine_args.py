"""vllm serve arguments: derived from placements, checked by the pinned vLLM's own parser."""

from __future__ import annotations

import pytest

from servekit.catalog import default_catalog
from servekit.engine_args import engine_args
from servekit.errors import UserError
from servekit.sizing import place
from servekit.spec import ModelDeployment, Quantization
from servekit.stackfile import available_stacks, resolve_stack
from servekit.vllm_flags import parse_with_vllm

CAT = default_catalog()


def _value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


def _stack_args() -> list[tuple[str, list[str], ModelDeployment]]:
    out = []
    for stack in available_stacks():
        r = resolve_stack(stack)
        for dep, p in zip(r.spec.models, r.placements, strict=True):
            out.append((f"{stack}/{dep.name}", engine_args(p, dep, CAT.models[dep.model]), dep))
    return out


def _catalog_args() -> list[list[str]]:
    """One argument list per model x weight format, each placed on whatever fits."""
    lists = []
    for m in CAT.models.values():
        for q in m.quantizations:
            dep = ModelDeployment.model_validate({
                "name": "probe", "model": m.id, "quantization": q, "kvCacheDtype": "fp8",
                "sla": {"p95E2eSeconds": 600, "concurrencyPerReplica": 4}})
            lists.append(engine_args(place(dep, CAT), dep, m))
    return lists


def test_every_generated_list_passes_the_real_vllm_parser() -> None:
    stack_lists = [args for _, args, _ in _stack_args()]
    lora = ModelDeployment.model_validate({
        "name": "tuned", "model": "llama-3.1-8b-instruct", "sla": {"p95E2eSeconds": 60, "concurrencyPerReplica": 8},
        "loraAdapters": [{"name": "sql", "source": "s3://b/sql"}, {"name": "json", "source": "hf://org/json"}],
        "extraEngineArgs": ["--disable-log-stats"]})
    lora_args = engine_args(place(lora, CAT), lora, CAT.models[lora.model],
                            lora_paths={"sql": "/adapters/sql", "json": "/adapters/json"})
    store = engine_args(place(lora, CAT), lora.model_copy(update={"lora_adapters": []}), CAT.models[lora.model],
                        model_path="s3://models/llama-3.1-8b-instruct", load_format="runai_streamer")
    lists = [*stack_lists, *_catalog_args(), lora_args, store]
    errors = parse_with_vllm(lists)
    bad = [(a, e) for a, e in zip(lists, errors, strict=True) if e]
    assert not bad, bad[:3]


@pytest.mark.parametrize(("name", "args", "dep"), _stack_args(), ids=lambda v: v if isinstance(v, str) else "")
def test_stack_args_follow_the_placement(name: str, args: list[str], dep: ModelDeployment) -> None:
    assert _value(args, "--max-num-seqs") == str(dep.sla.concurrency_per_replica)
    assert _value(args, "--served-model-name") == dep.name
    assert "--swap-space" not in args


def test_quantization_flag_only_for_online_fp8() -> None:
    m = CAT.models["llama-3.1-70b-instruct"]

    def args_for(q: Quantization) -> list[str]:
        dep = ModelDeployment.model_validate({"name": "x", "model": m.id, "quantization": q,
                                              "sla": {"p95E2eSeconds": 600, "concurrencyPerReplica": 4}})
        return engine_args(place(dep, CAT), dep, m)

    awq = args_for(Quantization.AWQ)
    assert "--quantization" not in awq and _value(awq, "--model") == m.quantizations[Quantization.AWQ].repo
    fp8 = args_for(Quantization.FP8)
    if m.quantizations[Quantization.FP8].repo is None:
        assert _value(fp8, "--quantization") == "fp8"
    else:
        assert "--quantization" not in fp8 and _value(fp8, "--model") == m.quantizations[Quantization.FP8].repo
    qwen = CAT.models["qwen2.5-14b-instruct"]  # no FP8 checkpoint: vLLM quantizes online
    assert qwen.quantizations[Quantization.FP8].repo is None
    dep = ModelDeployment.model_validate({"name": "x", "model": qwen.id, "quantization": "fp8",
                                          "sla": {"p95E2eSeconds": 600, "concurrencyPerReplica": 4}})
    assert _value(engine_args(place(dep, CAT), dep, qwen), "--quantization") == "fp8"


@pytest.mark.parametrize(("extra", "needle"), [
    (["--swap-space", "4"], "does not accept --swap-space"),
    (["--tensor-parallel-size", "4"], "set by servekit from tensorParallelSize"),
    (["--max-num-seqs=64"], "set by servekit from sla.concurrencyPerReplica"),
    (["--kv-cache-dtype", "fp7"], "--kv-cache-dtype"),
])
def test_bad_extra_engine_args_are_user_errors(extra: list[str], needle: str) -> None:
    dep = ModelDeployment.model_validate({"name": "x", "model": "qwen3-8b", "extraEngineArgs": extra,
                                          "sla": {"p95E2eSeconds": 60, "concurrencyPerReplica": 8}})
    with pytest.raises(UserError, match=needle):
        engine_args(place(dep, CAT), dep, CAT.models[dep.model], origin="stacks/Pulumi.x.yaml: models[0].")
