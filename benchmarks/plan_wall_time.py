"""Wall time of ``servekit plan`` for generated stacks of 1, 5 and 20 models.

Two numbers per stack size:

- ``cold``: ``servekit plan --stack <s> --json`` as a fresh process, what a user waits for (interpreter
  start, imports of pulumi/pulumi_aws/pulumi_kubernetes, sizing, the program under the offline
  engine, JSON out); median of ``--repeat`` runs.
- ``warm``: ``servekit.offline.plan_stack`` again in one process after a first run (what tests and
  other commands pay per stack once the imports are done); median of ``--repeat`` runs.

    .venv/bin/python benchmarks/plan_wall_time.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

SIZES = (1, 5, 20)
# (model, weight format, GPU allowlist) combinations that place on single-GPU nodes
MODELS = (
    ("qwen2.5-7b-instruct", "awq", ["l4"]),
    ("llama-3.1-8b-instruct", "bf16", ["l40s"]),
    ("qwen3-8b", "bf16", ["a10g"]),
    ("llama-3.1-8b-instruct", "fp8", ["l4"]),
    ("qwen2.5-14b-instruct", "awq", ["l40s"]),
)
PURCHASES = ("on-demand", "savings-plan-1y", "reserved-1y")


def stack_config(n: int) -> dict[str, Any]:
    models = []
    for i in range(n):
        model, quant, gpus = MODELS[i % len(MODELS)]
        models.append({
            "name": f"m{i:02d}", "model": model, "quantization": quant, "gpus": gpus, "replicas": 1 + i % 2,
            "purchase": {"option": PURCHASES[i % len(PURCHASES)]},
            "sla": {"p95E2eSeconds": 20, "concurrencyPerReplica": 8, "workload": "chat"},
        })
    return {"config": {
        "aws:region": "us-east-1",
        "servekit:environment": "prod",
        "servekit:tags": {"owner": "bench@example.com", "costCenter": "cc-0", "dataClassification": "internal"},
        "servekit:network": {"vpcCidr": "10.90.0.0/16", "azCount": 3, "egress": "nat"},
        "servekit:cluster": {"version": "1.34", "endpointPublic": False},
        "servekit:models": models,
    }}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    servekit = Path(sys.executable).parent / "servekit"
    from servekit.offline import plan_stack

    with tempfile.TemporaryDirectory(prefix="servekit-bench-") as tmp:
        stacks = Path(tmp)
        for n in SIZES:
            (stacks / f"Pulumi.bench{n}.yaml").write_text(yaml.safe_dump(stack_config(n), sort_keys=False))
        env = {**os.environ, "SERVEKIT_STACKS_DIR": str(stacks)}
        rows = []
        for n in SIZES:
            cold = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                r = subprocess.run([str(servekit), "plan", "--stack", f"bench{n}", "--json"], env=env,
                                   capture_output=True, text=True, check=False)
                cold.append(time.perf_counter() - t)
                if r.returncode != 0:
                    print(r.stderr, file=sys.stderr)
                    return 1
            plan = plan_stack(f"bench{n}", stacks)  # warm-up (imports, caches)
            warm = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                plan = plan_stack(f"bench{n}", stacks)
                warm.append(time.perf_counter() - t)
            rows.append((n, len(plan.resources), len(plan.node_pools), statistics.median(cold),
                         statistics.median(warm)))
    print(f"servekit plan wall time (median of {args.repeat}; Python {sys.version.split()[0]}, {os.cpu_count()} CPUs)")
    print(f"{'models':>6} {'resources':>9} {'GPU pools':>9} {'cold CLI s':>10} {'warm in-process s':>17}")
    for n, res, pools, cold_s, warm_s in rows:
        print(f"{n:>6} {res:>9} {pools:>9} {cold_s:>10.2f} {warm_s:>17.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
