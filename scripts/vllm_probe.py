#!/usr/bin/env python3
"""Ask the pinned vLLM itself about its `vllm serve` flags and Prometheus metrics.

Run ONLY with the vLLM venv's interpreter (scripts/ensure_vllm_venv.sh makes it):

    .venv-vllm/bin/python scripts/vllm_probe.py snapshot   # flags of `vllm serve`, JSON on stdout
    .venv-vllm/bin/python scripts/vllm_probe.py metrics    # metrics the V1 Prometheus logger registers
    .venv-vllm/bin/python scripts/vllm_probe.py parse < lists.json   # [[args...], ...] -> [{ok, error}]

The kit itself never imports vllm (9 GB, its own pins); servekit/vllm_flags.py reads the JSON this
script wrote into servekit/data/ and calls `parse` through a subprocess when it wants the real parser.
"""

from __future__ import annotations

import argparse
import contextlib
import enum
import io
import json
import logging
import os
import sys
import types
import warnings
from collections.abc import Callable, Iterator
from typing import Any

# vLLM and torch log at import time; stdout must carry only our JSON.
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")
os.environ.setdefault("TORCH_CPP_LOG_LEVEL", "ERROR")
warnings.filterwarnings("ignore")

# Recorded in the committed JSON so a reader knows how to regenerate it.
GENERATED_BY = ".venv-vllm/bin/python scripts/vllm_probe.py {command}"


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Send anything vLLM prints while importing to stderr, keeping stdout for JSON."""
    with contextlib.redirect_stdout(sys.stderr):
        yield


def _select_cpu_platform() -> None:
    # No GPU here: without this, vLLM's device inference raises RuntimeError while the
    # parser is built. `_current_platform` is private; tests/test_vllm_flags.py fails if it moves.
    import vllm.platforms as platforms
    from vllm.platforms.cpu import CpuPlatform

    platforms._current_platform = CpuPlatform()


def build_serve_parser() -> tuple[argparse.ArgumentParser, argparse.ArgumentParser]:
    """The top-level `vllm` parser with only its `serve` subcommand, exactly as vllm's CLI main builds it.

    Returns (top, serve). Parsing ["serve", *args] with `top` is what `vllm serve args...` does,
    including FlexibleArgumentParser's rewrites (--model moved to the positional, _ -> -, dotted JSON).
    """
    with _quiet_stdout():
        _select_cpu_platform()
        from vllm.entrypoints.cli.serve import ServeSubcommand
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        top = FlexibleArgumentParser(prog="vllm", description="vLLM CLI")
        subparsers = top.add_subparsers(required=False, dest="subparser")
        cmd = ServeSubcommand()
        serve = cmd.subparser_init(subparsers)
        serve.set_defaults(dispatch_function=cmd.cmd)
    return top, serve


def _vllm_version() -> str:
    import vllm

    return str(vllm.__version__)


# ---------------------------------------------------------------------------------------- snapshot


def _unwrap(fn: Callable[..., Any]) -> tuple[Callable[..., Any], bool]:
    """Peel vLLM's optional_type/parse_type closures; report whether '' / 'None' mean unset."""
    optional = False
    for _ in range(4):
        qual = getattr(fn, "__qualname__", "")
        closure = getattr(fn, "__closure__", None)
        if not closure or not qual.startswith(("optional_type.", "parse_type.")):
            break
        optional = optional or qual.startswith("optional_type.")
        freevars = fn.__code__.co_freevars
        cells = dict(zip(freevars, (c.cell_contents for c in closure), strict=True))
        if "return_type" not in cells:
            break
        fn = cells["return_type"]
    return fn, optional


def _type_name(action: argparse.Action) -> tuple[str, bool]:
    """A small vocabulary servekit/vllm_flags.py knows how to check without importing vllm."""
    if action.nargs == 0:
        return "bool", False
    fn = action.type
    if fn is None:
        return "str", False
    if not callable(fn):  # argparse also allows a registered type name; vLLM uses none here
        return f"other:{fn!r}", False
    base, optional = _unwrap(fn)
    qual = getattr(base, "__qualname__", repr(base))
    module = getattr(base, "__module__", "")
    known = {
        "int": "int",
        "float": "float",
        "str": "str",
        "loads": "json",  # json.loads
        "human_readable_int": "humanInt",
        "human_readable_int_or_auto": "humanIntOrAuto",
        "union_dict_and_str": "jsonOrStr",
        "parse_reasoning_parser": "str",
    }
    if qual in known and (qual != "loads" or module == "json"):
        return known[qual], optional
    if qual.endswith("parse_dataclass"):
        # A config dataclass as a JSON object (human numbers like 8k allowed) or dotted --x.y keys.
        return "jsonConfig", optional
    if "<lambda>" in qual:
        # Backend-name lambdas normalise before argparse checks choices; tell the checker so.
        with contextlib.suppress(Exception):
            if base("Ab-C") == "ab_c":
                return "strLowerSnake", optional
        return "str", optional  # e.g. comma-separated device ids: any text parses
    return f"other:{module}.{qual}", optional


def _nargs(action: argparse.Action) -> int | str | None:
    n = action.nargs
    if n is None or isinstance(n, int):
        return n
    return str(n)


def _known_values(action: argparse.Action) -> list[str] | None:
    """Values vLLM lists for a `Literal[...] | str` field: shown as metavar, not enforced by argparse.

    vLLM leaves these open so plugins can register more (quantization methods, KV-cache dtypes,
    load formats); the built-in set is what a stock image accepts at engine start.
    """
    if isinstance(action.metavar, list | tuple) and action.metavar:
        return sorted(str(v) for v in action.metavar)
    return None


def _runtime_registries() -> dict[str, list[str]]:
    """The registries vLLM checks open-valued flags against when the engine starts."""
    with _quiet_stdout():
        from vllm.config.cache import KV_CACHE_DTYPES
        from vllm.model_executor.layers.quantization import QUANTIZATION_METHODS
        from vllm.model_executor.model_loader import _LOAD_FORMAT_TO_MODEL_LOADER

    return {
        "--kv-cache-dtype": sorted(KV_CACHE_DTYPES),
        "--quantization": sorted(QUANTIZATION_METHODS),
        "--load-format": sorted(_LOAD_FORMAT_TO_MODEL_LOADER),
    }


def snapshot() -> dict[str, Any]:
    _, serve = build_serve_parser()
    registries = _runtime_registries()
    flags: dict[str, dict[str, Any]] = {}
    for action in serve._actions:
        if not action.option_strings or isinstance(action, argparse._HelpAction):
            continue
        long_names = [o for o in action.option_strings if o.startswith("--")]
        primary = long_names[0] if long_names else action.option_strings[0]
        type_name, optional = _type_name(action)
        choices = None if action.choices is None else sorted(str(c) for c in action.choices)
        known = registries.get(primary) or _known_values(action)
        flags[primary] = {
            "takesValue": action.nargs != 0,
            "type": type_name,
            "optional": optional,
            "choices": choices,
            "knownValues": known,
            "knownValuesSource": ("runtime registry" if primary in registries else ("metavar" if known else None)),
            "nargs": _nargs(action),
            "action": type(action).__name__,
            "aliases": sorted(o for o in action.option_strings if o != primary),
            "default": _jsonable(action.default),
        }
    positionals = [a.dest for a in serve._actions if not a.option_strings]
    return {
        "generatedBy": GENERATED_BY.format(command="snapshot"),
        "vllmVersion": _vllm_version(),
        "parser": "vllm serve (vllm.entrypoints.cli.serve.ServeSubcommand.subparser_init)",
        "positionals": positionals,
        "notes": [
            "choices are enforced by argparse; knownValues (from vLLM's runtime registries) are "
            "not, but the engine rejects other values at start-up unless a plugin registers them.",
            "default is what the parser holds with the CPU platform selected; some are resolved later against the GPU.",
        ],
        "flagCount": len(flags),
        "flags": dict(sorted(flags.items())),
    }


def _jsonable(value: Any) -> Any:
    """Defaults as JSON: enums by value, anything else exotic by repr (dataclass defaults are dicts)."""

    def fallback(obj: Any) -> Any:
        return obj.value if isinstance(obj, enum.Enum) else repr(obj)

    return json.loads(json.dumps(value, default=fallback))


# ------------------------------------------------------------------------------------------- parse


def _registry_check(ns: argparse.Namespace, registries: dict[str, list[str]]) -> str | None:
    """The engine-start checks for values argparse leaves open, using vLLM's own functions."""
    with _quiet_stdout():
        from vllm.config.cache import is_known_kv_cache_dtype
        from vllm.model_executor.layers.quantization import get_quantization_config
        from vllm.model_executor.model_loader import _LOAD_FORMAT_TO_MODEL_LOADER

    kv = getattr(ns, "kv_cache_dtype", None)
    if kv is not None and not is_known_kv_cache_dtype(kv):
        return f"Invalid kv_cache_dtype: {kv!r}"  # CacheConfig._validate_cache_dtype's wording
    quant = getattr(ns, "quantization", None)
    if quant:
        try:
            get_quantization_config(quant)
        except ValueError as exc:
            return str(exc)
    load_format = getattr(ns, "load_format", None)
    # LoadConfig lowercases, then get_model_loader looks the format up.
    if isinstance(load_format, str) and load_format.lower() not in _LOAD_FORMAT_TO_MODEL_LOADER:
        return f"Load format `{load_format.lower()}` is not supported"
    return None


def parse_lists(arg_lists: list[list[str]]) -> list[dict[str, Any]]:
    top, _ = build_serve_parser()
    registries = _runtime_registries()
    results: list[dict[str, Any]] = []
    for args in arg_lists:
        err = io.StringIO()
        error: str | None = None
        try:
            with contextlib.redirect_stderr(err), _quiet_stdout():
                ns = top.parse_args(["serve", *args])
            error = _registry_check(ns, registries)
        except SystemExit:
            # argparse prints "usage: ...\nvllm serve: error: <message>" and exits 2.
            text = err.getvalue()
            _, sep, message = text.partition(": error: ")
            error = (message if sep else text).strip()
        except ValueError as exc:  # FlexibleArgumentParser raises this for a model-less --served-model-name
            error = str(exc)
        results.append({"ok": error is None, "error": error})
    return results


# ----------------------------------------------------------------------------------------- metrics


def _stand_in_config(*, features_on: bool, max_model_len: int) -> Any:
    """Just the attributes PrometheusStatLogger reads; a real VllmConfig needs a model download.

    features_on switches on every optional block in the logger (LoRA, spec decode, KV residency
    histograms, watermark) so the conditional metrics register too.
    """
    ns = types.SimpleNamespace
    return ns(
        observability_config=ns(
            show_hidden_metrics=False,
            kv_cache_metrics=features_on,
            custom_histogram_buckets=None,
            enable_mfu_metrics=features_on,
        ),
        model_config=ns(served_model_name="m", max_model_len=max_model_len, is_diffusion=False),
        speculative_config=ns(num_speculative_tokens=3) if features_on else None,
        lora_config=ns(max_loras=2) if features_on else None,
        watermark_config=ns() if features_on else None,
        kv_transfer_config=None,  # connector metrics depend on which connector; not used by servekit
        ec_transfer_config=None,
    )


def _series(name: str, kind: str) -> list[str]:
    """The sample names a scrape shows (prometheus_client strips, then re-adds, a counter's _total)."""
    if kind == "counter":
        return [f"{name}_total"]
    if kind == "histogram":
        return [f"{name}_bucket", f"{name}_count", f"{name}_sum"]
    return [name]


def _registered(max_model_len: int, *, features_on: bool) -> dict[str, dict[str, Any]]:
    with _quiet_stdout():
        import prometheus_client
        from prometheus_client import REGISTRY
        from vllm.config import CacheConfig
        from vllm.v1.metrics.loggers import PrometheusStatLogger
        from vllm.v1.metrics.prometheus import unregister_vllm_metrics

        unregister_vllm_metrics()
        logger = PrometheusStatLogger(_stand_in_config(features_on=features_on, max_model_len=max_model_len))
        # The engine adds this info gauge after start-up; CacheConfig() builds without a model.
        logger.log_metrics_info("cache_config", CacheConfig())
    out: dict[str, dict[str, Any]] = {}
    # Read back what actually got registered: this covers the sub-loggers (spec decode, perf) too.
    for collector in list(REGISTRY._collector_to_names):
        if not isinstance(collector, prometheus_client.metrics.MetricWrapperBase):
            continue
        name = collector._name
        if not name.startswith("vllm:"):
            continue
        entry: dict[str, Any] = {
            "type": collector._type,
            "series": _series(name, collector._type),
            "labels": sorted(collector._labelnames),
            "help": collector._documentation,
        }
        if isinstance(collector, prometheus_client.Histogram):
            entry["buckets"] = [b for b in collector._upper_bounds if b != float("inf")]
        out[name] = entry
    with _quiet_stdout():
        unregister_vllm_metrics()
    return out


def metrics() -> dict[str, Any]:
    os.environ["VLLM_COMPUTE_NANS_IN_LOGITS"] = "0"
    base = _registered(8192, features_on=False)
    full = _registered(8192, features_on=True)
    other_len = _registered(32768, features_on=True)
    result: dict[str, dict[str, Any]] = {}
    for name, entry in sorted(full.items()):
        entry = dict(entry)
        entry["conditional"] = name not in base
        if "buckets" in entry:
            entry["bucketsDependOnMaxModelLen"] = entry["buckets"] != other_len[name]["buckets"]
        result[name] = entry
    return {
        "generatedBy": GENERATED_BY.format(command="metrics"),
        "vllmVersion": _vllm_version(),
        "source": "vllm.v1.metrics.loggers.PrometheusStatLogger instantiated (plus log_metrics_info"
        "('cache_config', CacheConfig())), read back from prometheus_client.REGISTRY",
        "bucketsMaxModelLen": 8192,
        "notes": [
            "Keys are prometheus_client family names; 'series' are the names a scrape shows.",
            "conditional=true metrics register only when the feature is on (LoRA, speculative "
            "decoding, --kv-cache-metrics, watermarking).",
            "bucketsDependOnMaxModelLen=true buckets are shown for max_model_len=8192.",
            "Not covered: KV/EC connector metrics (depend on the connector), "
            "vllm:corrupted_requests (needs VLLM_COMPUTE_NANS_IN_LOGITS=1), HTTP-server metrics.",
        ],
        "metricCount": len(result),
        "metrics": result,
    }


# -------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    cli = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    cli.add_argument("command", choices=["snapshot", "parse", "metrics"])
    opts = cli.parse_args(argv)
    logging.disable(logging.WARNING)
    if opts.command == "snapshot":
        payload: Any = snapshot()
    elif opts.command == "metrics":
        payload = metrics()
    else:
        arg_lists = json.load(sys.stdin)
        if not isinstance(arg_lists, list) or not all(
            isinstance(a, list) and all(isinstance(s, str) for s in a) for a in arg_lists
        ):
            print("parse: stdin must be a JSON list of lists of strings", file=sys.stderr)
            return 2
        payload = parse_lists(arg_lists)
    json.dump(payload, sys.stdout, indent=2, sort_keys=False)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
