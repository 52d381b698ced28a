"""servekit: open LLMs on your own AWS GPUs, sized, priced, policy-checked and SLA-gated."""

__version__ = "0.1.0"
