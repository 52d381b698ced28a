"""Pulumi components: one ComponentResource per module, type token ``servekit:<module>:<Type>``.

AWS side: :mod:`components.network`, :mod:`components.cluster`, :mod:`components.gpu_nodes`, composed
by :mod:`components.platform` (which also hosts the extension point the Kubernetes-side, monitoring
and SLA-gate components plug into). Components take typed spec objects and placements; they never
read ``pulumi.Config`` and never re-derive sizing.

Shared helpers (tags, child options, launch templates, policy JSON) live in :mod:`components._common`.
"""
