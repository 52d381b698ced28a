"""Every servekit policy, importable without building the pack.

``ALL_POLICIES`` is what ``policies/__main__.py`` hands to ``PolicyPack`` and what the tests and the
offline auditor (``servekit audit``) run. Each module holds one concern; ``_meta`` holds the
metadata table (severity, default enforcement, framework controls, remediation).
"""

from __future__ import annotations

from . import budget, encryption, gpu, isolation, kubernetes, licensing, residency, sla, tagging
from ._config import Resolved, load_pack_config, resolve
from ._meta import META, AnyPolicy, Control, PolicyMeta

Policy = AnyPolicy

ALL_POLICIES: list[Policy] = [
    *isolation.POLICIES,
    *encryption.POLICIES,
    *kubernetes.POLICIES,
    *licensing.POLICIES,
    *gpu.POLICIES,
    *residency.POLICIES,
    *tagging.POLICIES,
    *sla.POLICIES,
    *budget.POLICIES,
]

POLICIES_BY_NAME: dict[str, Policy] = {p.name: p for p in ALL_POLICIES}

__all__ = [
    "ALL_POLICIES",
    "META",
    "POLICIES_BY_NAME",
    "Control",
    "Policy",
    "PolicyMeta",
    "Resolved",
    "load_pack_config",
    "resolve",
]
