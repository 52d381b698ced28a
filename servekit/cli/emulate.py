"""``servekit emulate``: an OpenAI-compatible vLLM emulator with known latencies, for dry runs of the gate."""

from __future__ import annotations

from typing import Annotated

import typer

from servekit.cli._common import check_finite
from servekit.errors import UserError


def register(app: typer.Typer) -> None:
    @app.command("emulate")
    def emulate(
        port: Annotated[int, typer.Option("--port", min=0, max=65535, help="0 picks a free port.")] = 8000,
        host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
        model: Annotated[str, typer.Option("--model", help="Served model name.")] = "emulated",
        ttft: Annotated[float, typer.Option("--ttft", min=0.0, help="TTFT of a lone request, seconds.")] = 0.05,
        prefill_per_1k: Annotated[float, typer.Option("--prefill-per-1k", min=0.0,
                                                      help="Extra TTFT per 1000 prompt tokens, seconds.")] = 0.0,
        itl: Annotated[float, typer.Option("--itl", min=0.0, help="Delay between tokens below the knee, s.")] = 0.02,
        knee: Annotated[int, typer.Option("--knee", min=1, help="Running sequences past which decode slows.")] = 32,
        itl_slope: Annotated[float, typer.Option("--itl-slope", min=0.0,
                                                 help="Extra token delay per sequence over the knee, s.")] = 0.002,
        ttft_slope: Annotated[float, typer.Option("--ttft-slope", min=0.0,
                                                  help="Extra TTFT per sequence over the knee, s.")] = 0.0,
        jitter: Annotated[float, typer.Option("--jitter", min=0.0, help="Sigma of the per-request log-normal "
                                              "latency factor.")] = 0.1,
        max_num_seqs: Annotated[int, typer.Option("--max-num-seqs", min=1, help="Batch cap; more requests queue.")]
        = 256,
        error_rate: Annotated[float, typer.Option("--error-rate", min=0.0, max=1.0, help="HTTP 500s.")] = 0.0,
        stall_rate: Annotated[float, typer.Option("--stall-rate", min=0.0, max=1.0, help="Streams that hang.")]
        = 0.0,
        truncate_rate: Annotated[float, typer.Option("--truncate-rate", min=0.0, max=1.0,
                                                     help="Streams cut without finish_reason/[DONE].")] = 0.0,
        error_event_rate: Annotated[float, typer.Option("--error-event-rate", min=0.0, max=1.0,
                                                        help="Streams with an error event.")] = 0.0,
        wrong_finish_rate: Annotated[float, typer.Option("--wrong-finish-rate", min=0.0, max=1.0,
                                                         help="Streams ending early with finish_reason stop.")] = 0.0,
        refuse_rate: Annotated[float, typer.Option("--refuse-rate", min=0.0, max=1.0,
                                                   help="Connections reset on accept.")] = 0.0,
        slow_start: Annotated[float, typer.Option("--slow-start", min=0.0, help="Seconds after start during "
                                                  "which requests are slowed.")] = 0.0,
        slow_start_factor: Annotated[float, typer.Option("--slow-start-factor", min=1.0)] = 5.0,
        omit_usage: Annotated[bool, typer.Option("--omit-usage", help="Never send the usage chunk.")] = False,
        seed: Annotated[int, typer.Option("--seed")] = 0,
    ) -> None:
        """Serve an OpenAI-compatible vLLM emulator (SSE streaming, /metrics, fault modes) until Ctrl-C."""
        from loadtests.emulator import EmulatorConfig, Faults, LatencyModel, run

        check_finite({"--ttft": ttft, "--prefill-per-1k": prefill_per_1k, "--itl": itl, "--itl-slope": itl_slope,
                      "--ttft-slope": ttft_slope, "--jitter": jitter, "--slow-start": slow_start,
                      "--slow-start-factor": slow_start_factor})
        rates = error_rate + stall_rate + truncate_rate + error_event_rate + wrong_finish_rate
        if rates > 1.0:
            raise UserError("the per-request fault rates add up to more than 1", given=round(rates, 6))
        config = EmulatorConfig(
            model=model, seed=seed,
            latency=LatencyModel(ttft_s=ttft, prefill_s_per_1k_tokens=prefill_per_1k, itl_s=itl, knee=knee,
                                 itl_slope_s=itl_slope, ttft_slope_s=ttft_slope, jitter=jitter,
                                 max_num_seqs=max_num_seqs),
            faults=Faults(error_rate=error_rate, stall_rate=stall_rate, truncate_rate=truncate_rate,
                          error_event_rate=error_event_rate, wrong_finish_rate=wrong_finish_rate,
                          refuse_rate=refuse_rate, slow_start_s=slow_start, slow_start_factor=slow_start_factor,
                          omit_usage=omit_usage),
        )
        try:
            run(config, host, port)
        except OSError as e:
            raise UserError(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
