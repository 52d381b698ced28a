"""Size every model x GPU x weight format in the catalog and print the wall time.

Each request: the model at min(max context, 8192) tokens, chat workload, batch 32, p95 30 s,
one replica, restricted to one GPU type. Prints how many were feasible and how long it took.

    .venv/bin/python benchmarks/size_all.py
"""

from __future__ import annotations

import time

from servekit.catalog import default_catalog
from servekit.sizing import NoPlacement, place
from servekit.spec import ModelDeployment


def main() -> None:
    t0 = time.perf_counter()
    catalog = default_catalog()
    loaded = time.perf_counter()
    requests = feasible = candidates = 0
    for model in catalog.models.values():
        for gpu in catalog.gpus:
            for quant in model.quantizations:
                dep = ModelDeployment.model_validate({
                    "name": "bench", "model": model.id, "quantization": quant, "gpus": [gpu],
                    "sla": {"p95E2eSeconds": 30, "concurrencyPerReplica": 32}})
                requests += 1
                try:
                    p = place(dep, catalog)
                    feasible += 1
                    candidates += len(p.rejected) + 1
                except NoPlacement as e:
                    candidates += len(e.candidates)
    done = time.perf_counter()
    print(f"catalog: {len(catalog.models)} models, {len(catalog.gpus)} GPUs, {len(catalog.instances)} instance types")
    print(f"catalog load: {(loaded - t0) * 1000:.0f} ms")
    print(f"sized {requests} requests ({feasible} feasible), {candidates} candidates evaluated "
          f"in {done - loaded:.2f} s ({(done - loaded) / requests * 1000:.1f} ms per request, "
          f"{(done - loaded) / candidates * 1e6:.0f} us per candidate)")


if __name__ == "__main__":
    main()
