"""Post-deploy SLA gate: a Locust load test of an OpenAI-compatible vLLM endpoint, a verdict with a
confidence interval, reports, a concurrency sweep, and a vLLM emulator to calibrate it against.

Importing this package imports neither Locust nor gevent: Locust monkey-patches the whole process,
so only :mod:`loadtests.worker`, :mod:`loadtests.user` and :mod:`loadtests.locustfile` (which run in
their own load-generator process) import it.
"""
