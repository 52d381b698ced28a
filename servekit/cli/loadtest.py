"""``servekit loadtest``: measure a deployed model against its p95 latency SLA (or sweep for the knee).

Exit codes: the verdict's (0 PASS, 1 FAIL, 4 INCONCLUSIVE, 5 INVALID, see ``loadtests.sla``), 2 for
bad input. A sweep exits 0 when some concurrency met the SLA and 1 when none did.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

import typer

from servekit.cli._common import check_finite, check_output_file, console, err_console, print_json
from servekit.errors import EnvironmentMissing, ServekitError, UserError
from servekit.spec import SlaSpec, WorkloadProfile

DEFAULT_P95_S = 3.0  # the field report's SLA, when neither --p95 nor a stack gives one
DEFAULT_CONCURRENCY = 32  # ... and its batch size


class VerdictNotPass(ServekitError):
    """Carries a non-PASS verdict's exit code out through run_app (which maps ServekitError codes;
    a typer.Exit code is lost there under standalone_mode=False)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _stack_sla(stack: str, model: str | None) -> tuple[str, SlaSpec, int, int | None, int | None]:
    """(served model name, SLA, replicas, deployed max-num-seqs, sizing's predicted knee per replica) of one
    model of a stack; the last two are None when the stack cannot be placed here."""
    if importlib.util.find_spec("servekit.stackfile") is None:
        raise UserError("--stack is not available yet (servekit.stackfile is missing); use --endpoint and --model")
    stackfile: Any = importlib.import_module("servekit.stackfile")
    from servekit.cli.plan import stacks_dir

    directory = stacks_dir()
    spec = stackfile.load_stack(stack, directory)
    names = [m.name for m in spec.models]
    if model is None:
        if len(spec.models) != 1:
            raise UserError("the stack serves several models; choose one with --model", given=stack,
                            allowed=", ".join(names))
        dep = spec.models[0]
    else:
        found = [m for m in spec.models if m.name == model]
        if not found:
            raise UserError("no such model in the stack", path="--model", given=model, allowed=", ".join(names))
        dep = found[0]
    max_num_seqs = predicted = None
    try:  # the deployed batch cap and the sizing engine's view, for the sweep's comparison; optional
        resolved = stackfile.resolve_stack(stack, stacks_dir=directory)
        placement = next(p for p in resolved.placements if p.name == dep.name)
        max_num_seqs = placement.max_num_seqs
        predicted = _predicted_knee(placement, dep.sla)
    except Exception:
        pass
    return dep.name, dep.sla, dep.replicas, max_num_seqs, predicted


def _predicted_knee(placement: Any, sla: SlaSpec, cap: int = 4096) -> int | None:
    """Largest power-of-two batch whose p95 the sizing engine predicts within the SLA (per replica)."""
    from servekit import sizing
    from servekit.catalog import default_catalog
    from servekit.workloads import profile

    cat = default_catalog()
    model, gpu = cat.model(placement.model), cat.gpus[placement.gpu_type]
    knee, c = None, 1
    while c <= cap:
        est = sizing.estimate_latency(model, gpu, placement.quantization, placement.kv_cache_dtype,
                                      placement.tensor_parallel_size, c, profile(sla.workload),
                                      placement.max_num_batched_tokens, placement.max_model_len)
        if est.p95_e2e_seconds > sla.p95_e2e_seconds:
            break
        knee, c = c, c * 2
    return knee


def register(app: typer.Typer) -> None:
    @app.command("loadtest")
    def loadtest(
        endpoint: Annotated[str | None, typer.Option("--endpoint", help="Base URL of the OpenAI-compatible server.")]
        = None,
        model: Annotated[str | None, typer.Option("--model", help="Served model name (with --stack: which model).")]
        = None,
        stack: Annotated[str | None, typer.Option("--stack", "-s", help="Read the SLA from this stack.")] = None,
        concurrency: Annotated[int | None, typer.Option("--concurrency", min=1, help="Requests in flight "
                                                        "(default: SLA batch size x replicas).")] = None,
        p95: Annotated[float | None, typer.Option("--p95", min=0.001, help="p95 end-to-end SLA, seconds.")] = None,
        p95_ttft: Annotated[float | None, typer.Option("--p95-ttft", min=0.001, help="p95 TTFT SLA, seconds.")]
        = None,
        max_error_rate: Annotated[float | None, typer.Option("--max-error-rate", min=0.0, max=1.0)] = None,
        duration: Annotated[float, typer.Option("--duration", min=1.0, help="Measurement window, seconds.")] = 60.0,
        warmup_waves: Annotated[int, typer.Option("--warmup-waves", min=1, help="Requests per user excluded first.")]
        = 1,
        workload: Annotated[WorkloadProfile | None, typer.Option("--workload", help="Token-shape profile.")] = None,
        max_tokens: Annotated[int | None, typer.Option("--max-tokens", min=1, help="Output tokens per request.")]
        = None,
        completions: Annotated[bool, typer.Option("--completions", help="Use /v1/completions, not chat.")] = False,
        timeout: Annotated[float | None, typer.Option("--timeout", min=0.1, help="Per-request timeout, seconds "
                                                      "(default max(60, 4 x p95)).")] = None,
        processes: Annotated[int | None, typer.Option("--processes", min=1, help="Locust processes (default: one "
                                                      "per 256 users, at most one per CPU).")] = None,
        sweep: Annotated[bool, typer.Option("--sweep", help="Step concurrency 1, 2, 4, ... to find the knee.")]
        = False,
        sweep_cap: Annotated[int | None, typer.Option("--sweep-cap", min=1, help="Largest sweep step "
                                                      "(default 4 x concurrency).")] = None,
        target_rps: Annotated[float | None, typer.Option("--target-rps", min=0.0, help="Sweep: replicas needed "
                                                         "for this request rate.")] = None,
        json_out: Annotated[Path | None, typer.Option("--json", help="Write the JSON report here ('-': stdout).")]
        = None,
        markdown_out: Annotated[Path | None, typer.Option("--markdown", help="Write a Markdown report here.")] = None,
        html_out: Annotated[Path | None, typer.Option("--html", help="Write an HTML report with the plot here.")]
        = None,
    ) -> None:
        """Load-test an endpoint with Locust and judge its p95 latency SLA (PASS/FAIL/INCONCLUSIVE/INVALID).

        Closed loop at the SLA's batch size x replicas; one warm-up request per user is excluded.
        Percentiles are exact, with a 95% confidence interval.
        Exit codes: 0 PASS, 1 FAIL, 4 INCONCLUSIVE (measure longer), 5 INVALID (unmeasurable), 2 bad input.
        --sweep exits 0 when some concurrency met the SLA, else 1.
        """
        from loadtests.config import LoadConfig, default_processes
        from loadtests.reports import write_report, write_sweep
        from loadtests.runner import RunPlan, run
        from loadtests.sla import SlaTarget, evaluate, to_markdown
        from loadtests.sweep import sweep as run_sweep
        from loadtests.sweep import to_markdown as sweep_markdown

        check_finite({"--p95": p95, "--p95-ttft": p95_ttft, "--duration": duration, "--timeout": timeout,
                      "--target-rps": target_rps})
        replicas, max_num_seqs, predicted_knee = 1, None, None
        sla: SlaSpec | None = None
        if stack is not None:
            model, sla, replicas, max_num_seqs, predicted_knee = _stack_sla(stack, model)
            if endpoint is None:
                # The Service is cluster-internal (private endpoint, NetworkPolicy): reach it through a tunnel.
                raise UserError(
                    f"--stack needs --endpoint as well: the model's Service is cluster-internal; run "
                    f"`kubectl -n {model} port-forward svc/{model} 8000:8000` and pass --endpoint "
                    f"http://127.0.0.1:8000 (in-cluster clients need a namespace labelled servekit.io/client=true)")
        elif endpoint is None or model is None:
            raise UserError("give --endpoint URL and --model NAME, or --stack S")
        if not endpoint.startswith(("http://", "https://")):
            raise UserError("the endpoint must be an http(s) URL", path="--endpoint", given=endpoint)
        try:
            url = urlsplit(endpoint)
            _ = url.port  # ValueError for a port that is not a number in 0-65535
        except ValueError as e:
            raise UserError(f"not a valid URL: {e}", path="--endpoint", given=endpoint) from None
        if not url.hostname:
            raise UserError("the endpoint URL has no host", path="--endpoint", given=endpoint,
                            allowed="http(s)://HOST[:PORT][/PATH]")
        p95_s = p95 if p95 is not None else (sla.p95_e2e_seconds if sla else DEFAULT_P95_S)
        ttft_s = p95_ttft if p95_ttft is not None else (sla.p95_ttft_seconds if sla else None)
        conc = concurrency or ((sla.concurrency_per_replica * replicas) if sla else DEFAULT_CONCURRENCY)
        err_rate = max_error_rate if max_error_rate is not None else (sla.max_error_rate if sla else 0.01)
        prof = workload or (sla.workload if sla else WorkloadProfile.CHAT)
        if ttft_s is not None and ttft_s > p95_s:
            raise UserError("the TTFT SLA cannot exceed the end-to-end SLA", path="--p95-ttft", given=ttft_s)
        load = LoadConfig(endpoint=endpoint, model=model, concurrency=conc, workload=prof, chat=not completions,
                          max_tokens=max_tokens, request_timeout_s=timeout or max(60.0, 4 * p95_s))
        target = SlaTarget(p95_e2e_s=p95_s, p95_ttft_s=ttft_s, concurrency=conc, max_error_rate=err_rate)
        procs = processes or default_processes(conc)
        to_stdout = json_out is not None and str(json_out) == "-"
        json_path = None if to_stdout else json_out
        for option, report_path in (("--json", json_path), ("--markdown", markdown_out), ("--html", html_out)):
            if report_path is not None:  # checked before the run, so a mistyped path does not cost the measurement
                check_output_file(report_path, option)

        from loadtests.gate import served_models

        try:
            served = served_models(endpoint)
        except (OSError, ValueError) as e:
            raise EnvironmentMissing(f"cannot reach {endpoint}/v1/models: {getattr(e, 'reason', e)}") from None
        if model not in served:
            raise UserError("the endpoint does not serve this model", path="--model", given=model,
                            allowed=", ".join(served) or "(no models listed)")

        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(), console=err_console,
                      transient=True) as bar:
            task = bar.add_task("starting", total=1.0)

            def progress(msg: str, frac: float) -> None:
                bar.update(task, description=msg, completed=min(max(frac, 0.0), 1.0))

            if sweep:
                result = run_sweep(load, target, duration_s=duration, cap=sweep_cap or 4 * conc, replicas=replicas,
                                   warmup_waves=warmup_waves, processes=procs, target_rps=target_rps,
                                   max_num_seqs=max_num_seqs, predicted_knee=predicted_knee,
                                   progress=progress)
            else:
                report = evaluate(run(RunPlan(load=load, duration_s=duration, warmup_waves=warmup_waves,
                                              processes=procs), progress), target)
        if sweep:
            write_sweep(result, json_path=json_path, markdown_path=markdown_out, html_path=html_out)
            if to_stdout:
                print_json(result.to_json())
            else:
                console.print(sweep_markdown(result), markup=False, soft_wrap=True)
            if result.knee is None:
                raise VerdictNotPass("sweep: no concurrency met the SLA", 1)
            return
        write_report(report, json_path=json_path, markdown_path=markdown_out, html_path=html_out,
                     title=f"SLA load test: {model}")
        if to_stdout:
            print_json(report.to_json())
        else:
            console.print(to_markdown(report, f"SLA load test: {model}"), markup=False, soft_wrap=True)
            if json_path is not None:
                err_console.print(f"wrote {json_path}", markup=False)
        if report.exit_code != 0:
            raise VerdictNotPass(f"SLA verdict {report.verdict.value} (exit {report.exit_code})", report.exit_code)

