"""The pack entry point Pulumi runs (`pulumi preview --policy-pack policies`): it only assembles.

Pulumi runs this file with the pack directory on sys.path, so the rules import as the top-level
package `rules`. Never import this module in-process: `PolicyPack(...)` starts the analyzer's gRPC
server and blocks forever. Tests and `servekit audit` import `policies.rules` instead.
"""

from pulumi_policy import EnforcementLevel, PolicyPack
from rules import ALL_POLICIES

PolicyPack(
    name="servekit",
    policies=list(ALL_POLICIES),
    enforcement_level=EnforcementLevel.ADVISORY,  # only for a policy without its own level (none today)
    description="servekit: isolation, encryption/audit, Kubernetes hygiene and LLM-specific guardrails "
    "(licences, GPU allowlist and ceiling, residency, tags, SLA gate, budget) for vLLM on EKS.",
    display_name="servekit",
    provider="aws",
    tags=["aws", "eks", "kubernetes", "llm", "vllm", "gpu"],
)
