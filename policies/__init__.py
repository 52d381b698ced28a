"""servekit's CrossGuard policy pack (a pack directory: `pulumi preview --policy-pack policies`).

This file only makes ``policies.rules`` importable from the repository root (tests, the offline
auditor). The pack entry point is ``__main__.py``; never import it in-process - building a
``PolicyPack`` starts a gRPC server and blocks forever.
"""
