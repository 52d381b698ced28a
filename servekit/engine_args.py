"""Placement -> ``vllm serve`` arguments: the one home of vLLM flags.

Every list built here, and every flag a user adds through ``extraEngineArgs``, is checked
against the committed snapshot of the pinned vLLM's own parser (servekit/vllm_flags.py), so a
flag that version does not accept (``--swap-space``) is an error at plan time, not a crash loop.
"""

from __future__ import annotations

from collections.abc import Mapping

from servekit.errors import UserError
from servekit.sizing import Placement
from servekit.spec import KvCacheDtype, ModelDeployment, ModelSpec, Quantization
from servekit.vllm_flags import check_args

VLLM_PORT = 8000

# Flags servekit derives from the placement; a user setting them in extraEngineArgs would fight
# the sizing, so that is refused with a pointer to the stack field that controls it.
MANAGED_FLAGS = {
    "--model": "model",
    "--served-model-name": "name",
    "--tensor-parallel-size": "tensorParallelSize",
    "--max-model-len": "maxContext",
    "--gpu-memory-utilization": "gpuMemoryUtilization",
    "--max-num-seqs": "sla.concurrencyPerReplica",
    "--max-num-batched-tokens": "(derived from the GPU)",
    "--quantization": "quantization",
    "--kv-cache-dtype": "kvCacheDtype",
    "--dtype": "quantization",
    "--port": "(fixed at 8000)",
    "--revision": "the model file's revision",
    "--enable-lora": "loraAdapters",
    "--lora-modules": "loraAdapters",
    "--max-loras": "loraAdapters",
    "--load-format": "source",
}

_DTYPE = {Quantization.BF16: "bfloat16", Quantization.FP16: "float16"}


def engine_args(
    placement: Placement,
    deployment: ModelDeployment,
    model: ModelSpec,
    *,
    model_path: str | None = None,
    load_format: str | None = None,
    lora_paths: Mapping[str, str] | None = None,
    origin: str = "",
) -> list[str]:
    """The argument list after ``vllm serve`` (the image's entrypoint is the OpenAI server).

    ``model_path`` replaces the hub repo id when weights come from the model store;
    ``lora_paths`` maps adapter name -> local path inside the pod.
    """
    checkpoint = model.quantizations[placement.quantization]
    args = [
        "--model", model_path or placement.hf_repo,
        "--served-model-name", placement.name,
        "--tensor-parallel-size", str(placement.tensor_parallel_size),
        "--max-model-len", str(placement.max_model_len),
        "--gpu-memory-utilization", f"{placement.gpu_memory_utilization:g}",
        "--max-num-seqs", str(placement.max_num_seqs),
        "--max-num-batched-tokens", str(placement.max_num_batched_tokens),
        "--enable-prefix-caching",
        "--port", str(VLLM_PORT),
    ]
    if model_path is None:
        revision = checkpoint.revision if checkpoint.repo else model.revision
        if revision and revision != "main":
            args += ["--revision", revision]
    if load_format:
        args += ["--load-format", load_format]
    if placement.quantization in _DTYPE:
        args += ["--dtype", _DTYPE[placement.quantization]]
    # Pre-quantized checkpoints (AWQ, GPTQ, int8, FP8 repos) declare their method in config.json
    # and vLLM picks the fastest kernel (Marlin) itself; forcing --quantization awq would select
    # the slower plain-AWQ kernel. Only FP8 from 16-bit weights needs the online flag.
    if placement.quantization is Quantization.FP8 and checkpoint.repo is None:
        args += ["--quantization", "fp8"]
    if placement.kv_cache_dtype is KvCacheDtype.FP8:
        args += ["--kv-cache-dtype", "fp8"]
    if deployment.lora_adapters:
        paths = lora_paths or {}
        modules = [f"{a.name}={paths.get(a.name, a.source)}" for a in deployment.lora_adapters]
        args += ["--enable-lora", "--max-loras", str(len(modules)), "--lora-modules", *modules]
    check_args(args, origin=f"{origin}(generated)" if origin else "servekit-generated arguments")
    extra = list(deployment.extra_engine_args)
    if extra:
        where = f"{origin}extraEngineArgs"
        for token in extra:
            flag = token.split("=", 1)[0]
            if flag in MANAGED_FLAGS:
                raise UserError(f"{flag} is set by servekit from {MANAGED_FLAGS[flag]}; change that instead",
                                path=where, given=token)
        check_args(extra, origin=where)
    return args + extra
