"""``servekit diff``: what a change does to a stack, from the offline plans at two revisions.

The base revision's plan is built from a temporary ``git worktree`` of REF, in a subprocess whose
working directory and ``PYTHONPATH`` are that worktree, so the OLD program, components, catalog and
stack file are used; the head's plan is built the same way from the working tree (uncommitted edits
included). Both run at once. Each side yields a snapshot: the offline plan (``servekit.offline``,
secrets already redacted to ``"[secret]"``), the monthly cost when that revision has
``servekit.cost.stack_cost``, and the policy verdicts when it has ``servekit.audit``. A stack missing
on one side is a new (or removed) stack: every resource is added (or removed).

The comparison, most important first (this is also the order of the Markdown):

1. placements per model: GPU type, instance type, TP, replicas, nodes, batch and context limits,
   predicted p95, the vLLM flags of its Deployment; GPU node groups;
2. monthly cost, total and per line;
3. policy verdicts: violations that appear and that go away;
4. resource counts per type: added, removed, changed (by URN);
5. property-level diffs of changed resources (JSON strings such as IAM policies compared inside).

The Markdown is made for one pull-request comment: under :data:`MAX_MARKDOWN` characters whatever
the size of the change (long parts are collapsed in ``<details>`` and cut at whole entries, saying
how much was left out), with a hidden marker ``<!-- servekit-diff:<stack> -->`` on its first line that
the CI comment step finds the comment by, and ``<!-- servekit-diff-status:unchanged -->`` when
nothing changed.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from servekit.catalog import REPO_ROOT
from servekit.errors import EnvironmentMissing, ServekitError, UserError

MAX_MARKDOWN = 60_000  # GitHub refuses comments over 65,536 characters; keep a margin for the CI wrapper
MAX_VALUE = 160  # characters of one property value in a diff line
MAX_PROPS_PER_RESOURCE = 40
MAX_ROWS = 60  # rows of one table
SNAPSHOT_TIMEOUT_S = 900
UNCHANGED_MARKER = "<!-- servekit-diff-status:unchanged -->"


def marker(stack: str) -> str:
    return f"<!-- servekit-diff:{stack} -->"


# --------------------------------------------------------------------------- snapshots

# Runs inside the revision being planned (cwd and PYTHONPATH = its root), so it may only use what
# every revision with an offline engine has, and must tolerate missing optional modules.
# argv: output file, stack names. Writes {stack: snapshot}.
SNAPSHOT_SCRIPT = r'''
import importlib, io, json, sys, traceback
from contextlib import redirect_stdout
from pathlib import Path

out_file, stacks = sys.argv[1], sys.argv[2:]
root = Path.cwd().resolve()
result = {}
OWN = ("servekit", "components", "loadtests", "policies")

# An editable install's finder would resolve a module this revision lacks from the installed checkout
# (it answers for servekit.* whatever the package's __path__ says): drop it, so only `root` is used.
sys.meta_path[:] = [f for f in sys.meta_path if not str(getattr(f, "__module__", "")).startswith("__editable__")]
sys.path_hooks[:] = [h for h in sys.path_hooks if not str(getattr(h, "__module__", "")).startswith("__editable__")]
sys.path_importer_cache.clear()

def foreign_modules():
    bad = []
    for name, mod in list(sys.modules.items()):
        file = getattr(mod, "__file__", None)
        if name.split(".")[0] in OWN and file and not Path(file).resolve().is_relative_to(root):
            bad.append(f"{name} from {file}")
    return bad

def short_tb():
    return "".join(traceback.format_exc().strip().splitlines(True)[-6:])

def optional(name):
    try:
        return importlib.import_module(name), None
    except ModuleNotFoundError as e:
        return None, f"{name} is not in this revision ({e.name} missing)"

def snapshot(stack):
    snap = {"exists": True, "plan": None, "cost": None, "costNote": None, "policy": None, "policyNote": None,
            "error": None}
    import servekit
    if not Path(servekit.__file__).resolve().is_relative_to(root):
        raise SystemExit(f"servekit imported from {servekit.__file__}, not from {root}")
    from servekit import stackfile
    from servekit.errors import UserError
    if not stackfile.stack_path(stack).exists():
        snap["exists"] = False
        return snap
    offline, why = optional("servekit.offline")
    if offline is None:
        snap["error"] = f"cannot plan: {why}"
        return snap
    try:
        with redirect_stdout(io.StringIO()):
            plan = offline.plan_stack(stack)
    except UserError as e:
        snap["error"] = str(e)
        return snap
    except Exception:
        snap["error"] = "the plan failed:\n" + short_tb()
        return snap
    snap["plan"] = plan.to_json()
    cost, why = optional("servekit.cost")
    if cost is None or not hasattr(cost, "stack_cost"):
        snap["costNote"] = why or "servekit.cost has no stack_cost in this revision"
    else:
        try:
            spec = stackfile.load_stack(stack)
            snap["cost"] = cost.stack_cost(spec, list(plan.placements)).to_json()
        except Exception:
            snap["costNote"] = "stack_cost failed: " + short_tb()
    audit, why = optional("servekit.audit")
    if audit is None or not hasattr(audit, "audit_stack"):
        snap["policyNote"] = why or "servekit.audit has no audit_stack in this revision"
        return snap
    try:
        with redirect_stdout(io.StringIO()):
            report = audit_with_plan(audit, stack, plan)
        data = report.to_json()
        snap["policy"] = {"violations": list(data.get("violations", [])), "policies": len(data.get("policies", []))}
    except UserError as e:
        snap["policyNote"] = f"the policy audit refused the stack: {e}"
    except Exception:
        snap["policyNote"] = "the policy evaluation failed: " + short_tb()
    return snap

def audit_with_plan(audit, stack, plan):
    """audit_stack(stack) without planning the stack a second time, when this revision's audit module has
    the pieces audit_stack is made of (servekit.audit at the time servekit diff was written)."""
    import inspect
    if "plan" in inspect.signature(audit.audit_stack).parameters:
        return audit.audit_stack(stack, plan=plan)
    parts = ("CONFIG_DIR", "STACK_BUDGET_KEY", "load_policy_config", "with_stack_budget", "audit_plan")
    if not all(hasattr(audit, p) for p in parts):
        return audit.audit_stack(stack)
    from servekit import offline
    config_path = audit.CONFIG_DIR / f"{stack}.json"
    if not config_path.exists():
        return audit.audit_stack(stack)  # raises the module's own UserError
    pack_config = audit.load_policy_config(config_path)
    path, config, _notes = offline.stack_config(stack)
    effective, warnings = audit.with_stack_budget(pack_config, config.get(audit.STACK_BUDGET_KEY),
                                                  config_file=str(config_path), stack_file=str(path))
    providers = {}
    for key, value in config.items():
        package, _, name = key.partition(":")
        if package in ("aws", "kubernetes") and name:
            providers.setdefault(package, {})[name] = value
    return audit.audit_plan(plan, effective, provider_config=providers, warnings=warnings)

for s in stacks:
    try:
        result[s] = snapshot(s)
    except SystemExit:
        raise
    except Exception:
        result[s] = {"exists": True, "plan": None, "cost": None, "costNote": None, "policy": None,
                     "policyNote": None, "error": "this revision could not be loaded:\n" + short_tb()}
if foreign_modules():
    raise SystemExit("modules loaded from outside " + str(root) + ": " + ", ".join(foreign_modules()))
Path(out_file).write_text(json.dumps(result))
'''


@dataclass(frozen=True)
class Snapshot:
    """One side of the diff: a stack at one revision."""

    label: str  # e.g. "origin/main (3f2a9c1)" or "working tree"
    exists: bool
    plan: dict[str, Any] | None = None
    cost: dict[str, Any] | None = None
    cost_note: str | None = None
    policy: dict[str, Any] | None = None
    policy_note: str | None = None
    error: str | None = None

    @classmethod
    def from_json(cls, label: str, data: Mapping[str, Any]) -> Snapshot:
        return cls(label=label, exists=bool(data.get("exists")), plan=data.get("plan"), cost=data.get("cost"),
                   cost_note=data.get("costNote"), policy=data.get("policy"), policy_note=data.get("policyNote"),
                   error=data.get("error"))


def take_snapshots(root: Path, stacks: Sequence[str], label: str) -> dict[str, Snapshot]:
    """Plan ``stacks`` with the code and stack files under ``root`` (a subprocess; see the module docstring)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "SERVEKIT_STACKS_DIR")}
    env["PYTHONPATH"] = str(root)
    env["PYTHONWARNINGS"] = "ignore"
    with tempfile.TemporaryDirectory(prefix="servekit-snapshot-") as tmp:
        out = Path(tmp) / "snapshot.json"
        try:
            proc = subprocess.run([sys.executable, "-c", SNAPSHOT_SCRIPT, str(out), *stacks], cwd=root, env=env,
                                  capture_output=True, text=True, timeout=SNAPSHOT_TIMEOUT_S, check=False)
        except subprocess.TimeoutExpired:
            raise ServekitError(f"planning {', '.join(stacks)} at {label} took over {SNAPSHOT_TIMEOUT_S} s") from None
        if proc.returncode != 0 or not out.exists():
            tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
            error = f"the plan could not run at {label} (exit {proc.returncode}):\n{tail}"
            return {s: Snapshot(label=label, exists=True, error=error) for s in stacks}
        data = json.loads(out.read_text())
    return {s: Snapshot.from_json(label, data[s]) for s in stacks}


# --------------------------------------------------------------------------- git


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess[str]:
    git = shutil.which("git")
    if git is None:
        raise EnvironmentMissing("servekit diff needs git on PATH")
    return subprocess.run([git, "-C", str(repo), *args], capture_output=True, text=True, check=False)


def resolve_ref(repo: Path, ref: str) -> str:
    """The commit SHA of ``ref``; UserError (exit 2) when it is not a commit of ``repo``."""
    if _git(repo, "rev-parse", "--git-dir").returncode != 0:
        raise UserError("not a git repository, so there is no base to compare with", given=str(repo))
    if ref.startswith("-"):
        raise UserError("not a git revision", path="--base", given=ref)
    proc = _git(repo, "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}")
    if proc.returncode != 0:
        hint = " (in CI, check out with fetch-depth: 0 so the base branch is there)" if "/" in ref else ""
        raise UserError(f"no such git revision in {repo}{hint}", path="--base", given=ref)
    return proc.stdout.strip()


@contextlib.contextmanager
def worktree(repo: Path, sha: str) -> Iterator[Path]:
    """A detached worktree of ``sha`` in a temporary directory, removed afterwards whatever happens."""
    tmp = Path(tempfile.mkdtemp(prefix="servekit-diff-"))
    path = tmp / tmp.name  # git names the worktree after this; unique, so concurrent diffs never collide
    try:
        proc = _git(repo, "worktree", "add", "--detach", "--quiet", str(path), sha)
        if proc.returncode != 0:
            raise ServekitError(f"git worktree add failed: {proc.stderr.strip()}")
        yield path
    finally:
        _git(repo, "worktree", "remove", "--force", str(path))
        shutil.rmtree(tmp, ignore_errors=True)
        _git(repo, "worktree", "prune")


def head_label(repo: Path) -> str:
    sha = _git(repo, "rev-parse", "--short", "HEAD").stdout.strip()
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no").stdout.strip())
    return f"working tree ({sha}{' + uncommitted changes' if dirty else ''})" if sha else "working tree"


# --------------------------------------------------------------------------- comparison


@dataclass(frozen=True)
class Change:
    field: str
    before: Any
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class PlacementDiff:
    name: str
    kind: str  # added | removed | changed
    summary: str  # one line describing the placement on the side that has it (after, or before if removed)
    changes: tuple[Change, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "summary": self.summary,
                "changes": [c.to_json() for c in self.changes]}


@dataclass(frozen=True)
class PropertyChange:
    path: str
    before: Any  # MISSING when absent
    after: Any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, **({} if self.before is MISSING else {"before": self.before}),
                **({} if self.after is MISSING else {"after": self.after})}


@dataclass(frozen=True)
class ResourceRef:
    type: str
    name: str
    urn: str
    custom: bool

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "name": self.name, "urn": self.urn}


@dataclass(frozen=True)
class ResourceChange:
    ref: ResourceRef
    properties: tuple[PropertyChange, ...]

    def to_json(self) -> dict[str, Any]:
        return {**self.ref.to_json(), "properties": [p.to_json() for p in self.properties]}


@dataclass
class StackDiff:
    stack: str
    base: Snapshot
    head: Snapshot
    status: str  # unchanged | changed | new | removed | error
    placements: list[PlacementDiff] = field(default_factory=list)
    pools: list[PlacementDiff] = field(default_factory=list)
    cost_before: float | None = None
    cost_after: float | None = None
    cost_lines: list[Change] = field(default_factory=list)
    cost_note: str | None = None
    new_violations: list[dict[str, Any]] = field(default_factory=list)
    resolved_violations: list[dict[str, Any]] = field(default_factory=list)
    policy_note: str | None = None
    added: list[ResourceRef] = field(default_factory=list)
    removed: list[ResourceRef] = field(default_factory=list)
    changed: list[ResourceChange] = field(default_factory=list)
    new_warnings: list[str] = field(default_factory=list)
    gone_warnings: list[str] = field(default_factory=list)

    @property
    def has_changes(self) -> bool:
        return self.status != "unchanged"

    def to_json(self) -> dict[str, Any]:
        delta = None if self.cost_before is None or self.cost_after is None else self.cost_after - self.cost_before
        return {
            "stack": self.stack, "status": self.status,
            "base": {"ref": self.base.label, "exists": self.base.exists, "error": self.base.error},
            "head": {"ref": self.head.label, "exists": self.head.exists, "error": self.head.error},
            "summary": {"added": len(self.added), "removed": len(self.removed), "changed": len(self.changed)},
            "placements": [p.to_json() for p in self.placements],
            "nodePools": [p.to_json() for p in self.pools],
            "cost": None if delta is None else {
                "beforeMonthlyUsd": self.cost_before, "afterMonthlyUsd": self.cost_after, "deltaMonthlyUsd": delta,
                "lines": [c.to_json() for c in self.cost_lines]},
            "costNote": self.cost_note,
            "policy": None if self.policy_note else {"newViolations": self.new_violations,
                                                     "resolvedViolations": self.resolved_violations},
            "policyNote": self.policy_note,
            "warnings": {"added": self.new_warnings, "removed": self.gone_warnings},
            "resources": {"added": [r.to_json() for r in self.added], "removed": [r.to_json() for r in self.removed],
                          "changed": [c.to_json() for c in self.changed]},
        }


class _Missing:
    def __repr__(self) -> str:
        return "(absent)"


MISSING: Any = _Missing()

# (key in the placement JSON, label, formatter)
_PLACEMENT_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("model", "model", str),
    ("quantization", "weights", str),
    ("kvCacheDtype", "KV cache dtype", str),
    ("gpuType", "GPU type", str),
    ("instanceType", "instance type", str),
    ("gpusPerNode", "GPUs per node", str),
    ("tensorParallelSize", "tensor parallel", str),
    ("replicas", "replicas", str),
    ("maxReplicas", "max replicas", str),
    ("nodes", "nodes", str),
    ("maxNodes", "max nodes", str),
    ("idleGpus", "idle GPUs", str),
    ("maxModelLen", "max context", lambda v: f"{v:,}"),
    ("maxNumSeqs", "max batch (max-num-seqs)", str),
    ("maxNumBatchedTokens", "max batched tokens", lambda v: f"{v:,}"),
    ("gpuMemoryUtilization", "GPU memory utilization", lambda v: f"{v:g}"),
    ("predictedP95Seconds", "predicted p95", lambda v: f"{v:.2f} s"),
    ("hourlyUsd", "$/hour (on-demand)", lambda v: f"${v:,.2f}"),
)
_POOL_FIELDS: tuple[tuple[str, str, Callable[[Any], str]], ...] = (
    ("instanceTypes", "instance types", lambda v: ", ".join(v)),
    ("capacityType", "capacity", str),
    ("purchase", "purchase", str),
    ("zones", "zones", lambda v: ", ".join(v)),
    ("desiredNodes", "desired nodes", str),
    ("minNodes", "min nodes", str),
    ("maxNodes", "max nodes", str),
    ("volumeGib", "volume GiB", str),
    ("models", "models", lambda v: ", ".join(v)),
    ("monthlyUsd", "$/month", lambda v: f"${v:,.0f}"),
)


def _placement_line(p: Mapping[str, Any]) -> str:
    return (f"{p.get('model')} ({p.get('quantization')}): {p.get('replicas')} replica(s) on {p.get('nodes')} x "
            f"{p.get('instanceType')} ({p.get('gpuType')}, TP {p.get('tensorParallelSize')}), "
            f"${p.get('hourlyUsd', 0):,.2f}/h")


def engine_flags(plan: Mapping[str, Any] | None) -> dict[str, list[str]]:
    """Each model's vLLM argument list, read from its Deployment (the child of a VllmService) in the plan."""
    if not plan:
        return {}
    by_urn = {r["urn"]: r for r in plan.get("resources", [])}
    flags: dict[str, list[str]] = {}
    for r in plan.get("resources", []):
        if r.get("type") != "kubernetes:apps/v1:Deployment":
            continue
        parent = by_urn.get(r.get("parent") or "")
        if parent is None or not str(parent.get("type", "")).startswith("servekit:vllm_service:"):
            continue
        containers = (((r.get("inputs") or {}).get("spec") or {}).get("template") or {}).get("spec", {}).get(
            "containers") or []
        main = next((c for c in containers if c.get("name") == "vllm"), containers[0] if containers else {})
        flags[parent["name"]] = [str(a) for a in main.get("args") or []]
    return flags


def _flag_pairs(args: Sequence[str]) -> list[str]:
    """``['--tp', '2', '--x']`` -> ``['--tp 2', '--x']`` (a value stays with its flag)."""
    out: list[str] = []
    for a in args:
        if out and not a.startswith("--") and out[-1].startswith("--") and " " not in out[-1]:
            out[-1] = f"{out[-1]} {a}"
        else:
            out.append(a)
    return out


def _keyed_diff(before: Sequence[Mapping[str, Any]], after: Sequence[Mapping[str, Any]],
                fields: Sequence[tuple[str, str, Callable[[Any], str]]], line: Callable[[Mapping[str, Any]], str],
                extra: Callable[[str], list[Change]] | None = None) -> list[PlacementDiff]:
    b = {str(p["name"]): p for p in before}
    a = {str(p["name"]): p for p in after}
    out: list[PlacementDiff] = []
    for name in sorted(a.keys() - b.keys()):
        out.append(PlacementDiff(name, "added", line(a[name])))
    for name in sorted(b.keys() - a.keys()):
        out.append(PlacementDiff(name, "removed", line(b[name])))
    for name in sorted(a.keys() & b.keys()):
        changes = [Change(label, _fmt(fmt, b[name].get(key)), _fmt(fmt, a[name].get(key)))
                   for key, label, fmt in fields if b[name].get(key) != a[name].get(key)]
        changes = [c for c in changes if c.before != c.after]  # e.g. predicted p95 moving in the 4th decimal
        if extra is not None:
            changes += extra(name)
        if changes:
            out.append(PlacementDiff(name, "changed", line(a[name]), tuple(changes)))
    return out


def _fmt(fmt: Callable[[Any], str], value: Any) -> str:
    if value is None:
        return "-"
    try:
        return fmt(value)
    except (TypeError, ValueError):
        return str(value)


def _flag_changes(before: Mapping[str, list[str]], after: Mapping[str, list[str]], name: str) -> list[Change]:
    if name not in before or name not in after or before[name] == after[name]:
        return []
    b, a = _flag_pairs(before[name]), _flag_pairs(after[name])
    gone = [f for f in b if f not in a]
    new = [f for f in a if f not in b]
    if not gone and not new:
        return [Change("vLLM flags (order)", " ".join(b), " ".join(a))]
    return [Change("vLLM flags", " ".join(gone) or "-", " ".join(new) or "-")]


def _path_join(prefix: str, key: str) -> str:
    if key.replace("_", "").replace("-", "").isalnum():
        return f"{prefix}.{key}" if prefix else key
    return f"{prefix}[{json.dumps(key)}]"


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Leaves of a JSON value by path (``spec.template.spec.containers[0].image``).

    Lists of scalars stay one leaf (compared as lists); strings holding a JSON object or array (IAM
    policies, rendered configs) are parsed and compared inside, under ``path<json>``.
    """
    if isinstance(value, str) and value[:1] in "{[":
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, dict | list) and parsed:
            return flatten(parsed, f"{prefix}<json>")
    if isinstance(value, dict):
        if not value:
            return {prefix: {}}
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(flatten(v, _path_join(prefix, str(k))))
        return out
    if isinstance(value, list) and any(isinstance(v, dict | list) for v in value):
        out = {}
        for i, v in enumerate(value):
            out.update(flatten(v, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def property_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[PropertyChange]:
    b, a = flatten(dict(before)), flatten(dict(after))
    out = []
    for path in sorted(b.keys() | a.keys()):
        old, new = b.get(path, MISSING), a.get(path, MISSING)
        if old != new:
            out.append(PropertyChange(path or "(inputs)", old, new))
    return out


def _resources(plan: Mapping[str, Any] | None) -> dict[str, dict[str, Any]]:
    return {r["urn"]: r for r in (plan or {}).get("resources", [])}


def _ref(r: Mapping[str, Any]) -> ResourceRef:
    return ResourceRef(type=str(r["type"]), name=str(r["name"]), urn=str(r["urn"]), custom=bool(r.get("custom", True)))


def _violation_key(v: Mapping[str, Any]) -> tuple[str, str]:
    """A violation is the same one at both revisions when the policy and the resource are (its message may
    carry figures that move, e.g. the cost over a budget)."""
    return (str(v.get("policy", "")), str(v.get("urn") or v.get("resource", "")))


def _new_violations(now: Mapping[tuple[str, str], list[dict[str, Any]]],
                    then: Mapping[tuple[str, str], list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Violations in ``now`` beyond those ``then`` had for the same policy and resource."""
    out: list[dict[str, Any]] = []
    for key, items in now.items():
        old = then.get(key, [])
        extra = len(items) - len(old)
        if extra > 0:
            old_messages = {v.get("message") for v in old}
            fresh = [v for v in items if v.get("message") not in old_messages] or items
            out += fresh[:extra]
    return out


def compare(stack: str, base: Snapshot, head: Snapshot) -> StackDiff:
    """The difference between two snapshots of one stack (pure; no git, no subprocess)."""
    if not base.exists and not head.exists:
        raise UserError("no such stack at either revision", path="--stack", given=stack)
    if head.error or (base.error and head.plan is None):
        return StackDiff(stack, base, head, "error")
    base_plan = base.plan if base.exists and not base.error else None
    head_plan = head.plan if head.exists else None
    d = StackDiff(stack, base, head, "changed")

    flags_b, flags_a = engine_flags(base_plan), engine_flags(head_plan)
    d.placements = _keyed_diff((base_plan or {}).get("placements", []), (head_plan or {}).get("placements", []),
                               _PLACEMENT_FIELDS, _placement_line, lambda n: _flag_changes(flags_b, flags_a, n))
    d.pools = _keyed_diff((base_plan or {}).get("nodePools", []), (head_plan or {}).get("nodePools", []),
                          _POOL_FIELDS, lambda p: f"{', '.join(p.get('instanceTypes', []))} "
                                                  f"({p.get('capacityType')}, {p.get('purchase')})")

    # cost: a side without a stack gives $0; a side whose revision cannot price gives no figure
    cost_b = 0.0 if base_plan is None and not base.error else _monthly(base.cost)
    cost_a = 0.0 if head_plan is None else _monthly(head.cost)
    if cost_b is None or cost_a is None:
        notes = [f"{s.label}: {s.cost_note}" for s in (base, head) if s.cost_note and s.plan is not None]
        d.cost_note = "; ".join(notes) or "no cost at one of the revisions"
    else:
        d.cost_before, d.cost_after = cost_b, cost_a
        lines_b = {li["item"]: float(li["monthlyUsd"]) for li in (base.cost or {}).get("lines", [])}
        lines_a = {li["item"]: float(li["monthlyUsd"]) for li in (head.cost or {}).get("lines", [])}
        for item in sorted(lines_b.keys() | lines_a.keys()):
            if abs(lines_b.get(item, 0.0) - lines_a.get(item, 0.0)) >= 0.005:
                d.cost_lines.append(Change(item, lines_b.get(item), lines_a.get(item)))

    # policy verdicts
    pol_b = {} if base_plan is None and not base.error else _violations(base.policy)
    pol_a = {} if head_plan is None else _violations(head.policy)
    if pol_b is None or pol_a is None:
        notes = [f"{s.label}: {s.policy_note}" for s in (base, head) if s.policy_note and s.plan is not None]
        d.policy_note = "; ".join(dict.fromkeys(notes)) or "no policy verdicts at one of the revisions"
    else:
        d.new_violations = _new_violations(pol_a, pol_b)
        d.resolved_violations = _new_violations(pol_b, pol_a)
        d.new_violations.sort(key=_violation_rank)
        d.resolved_violations.sort(key=_violation_rank)

    res_b, res_a = _resources(base_plan), _resources(head_plan)
    d.added = [_ref(res_a[u]) for u in res_a if u not in res_b]
    d.removed = [_ref(res_b[u]) for u in res_b if u not in res_a]
    for urn in res_a.keys() & res_b.keys():
        props = property_changes(res_b[urn].get("inputs") or {}, res_a[urn].get("inputs") or {})
        if props:
            d.changed.append(ResourceChange(_ref(res_a[urn]), tuple(props)))
    d.changed.sort(key=lambda c: (not c.ref.custom, c.ref.type, c.ref.name))

    warn_b = list((base_plan or {}).get("warnings", []))
    warn_a = list((head_plan or {}).get("warnings", []))
    d.new_warnings = [w for w in warn_a if w not in warn_b]
    d.gone_warnings = [w for w in warn_b if w not in warn_a]

    if not base.exists:
        d.status = "new"
    elif not head.exists:
        d.status = "removed"
    elif base.error:
        d.status = "changed"
    elif not (d.placements or d.pools or d.cost_lines or d.new_violations or d.resolved_violations or d.added
              or d.removed or d.changed or d.new_warnings or d.gone_warnings
              or (d.cost_before is not None and abs((d.cost_after or 0) - d.cost_before) >= 0.005)):
        d.status = "unchanged"
    return d


def _monthly(cost: Mapping[str, Any] | None) -> float | None:
    return None if cost is None else float(cost["monthlyUsd"])


def _violations(policy: Mapping[str, Any] | None) -> dict[tuple[str, str], list[dict[str, Any]]] | None:
    if policy is None:
        return None
    out: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for v in policy.get("violations", []):
        out.setdefault(_violation_key(v), []).append(dict(v))
    return out


_SEVERITY = {"critical": 0, "high": 1, "medium": 2, "low": 3}


def _violation_rank(v: Mapping[str, Any]) -> tuple[int, int, str]:
    mandatory = 0 if str(v.get("enforcement", "")).lower() == "mandatory" else 1
    return (mandatory, _SEVERITY.get(str(v.get("severity", "")).lower(), 4), str(v.get("policy", "")))


# --------------------------------------------------------------------------- orchestration


def diff_stacks(stacks: Sequence[str], base_ref: str, repo: Path = REPO_ROOT) -> list[StackDiff]:
    """Compare ``stacks`` between ``base_ref`` and the working tree of ``repo`` (both planned at once)."""
    if not stacks:
        raise UserError("name at least one stack", path="--stack")
    for s in stacks:
        if not s or "/" in s or s.startswith("."):
            raise UserError("not a stack name", path="--stack", given=s)
    repo = repo.resolve()
    sha = resolve_ref(repo, base_ref)
    base_label = f"{base_ref} ({sha[:7]})" if not sha.startswith(base_ref) else sha[:7]
    with worktree(repo, sha) as wt, ThreadPoolExecutor(max_workers=2) as pool:
        base_f = pool.submit(take_snapshots, wt, stacks, base_label)
        head_f = pool.submit(take_snapshots, repo, stacks, head_label(repo))
        base, head = base_f.result(), head_f.result()
    return [compare(s, base[s], head[s]) for s in stacks]


def diff_stack(stack: str, base_ref: str, repo: Path = REPO_ROOT) -> StackDiff:
    return diff_stacks([stack], base_ref, repo)[0]


# --------------------------------------------------------------------------- Markdown


def _code(value: Any, limit: int = MAX_VALUE) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text.replace("\n", " ")


def _cell(value: Any, limit: int = MAX_VALUE) -> str:
    text = _code(value, limit).replace("|", "\\|")
    return f"`{text}`" if text and "`" not in text else text


def _usd(v: float) -> str:
    return f"${v:,.0f}"


def _delta_usd(before: float, after: float) -> str:
    delta = after - before
    sign = "+" if delta >= 0 else "-"
    pct = f" ({sign}{abs(delta) / before:.1%})" if before else ""
    return f"{sign}${abs(delta):,.0f}/month{pct}"


def _headline(d: StackDiff) -> str:
    parts: list[str] = []
    if d.status == "new":
        parts.append("**new stack**")
    elif d.status == "removed":
        parts.append("**stack removed**")
    gpu = [f"{p.name}: {c.before} → {c.after}" for p in d.placements for c in p.changes if c.field == "GPU type"]
    if gpu:
        parts.append("GPU " + "; ".join(gpu))
    models = [("+" if p.kind == "added" else "-") + p.name for p in d.placements if p.kind != "changed"]
    if models and d.status not in ("new", "removed"):
        parts.append("models " + " ".join(models))
    if d.cost_before is not None and d.cost_after is not None and abs(d.cost_after - d.cost_before) >= 0.5:
        parts.append(f"cost {_delta_usd(d.cost_before, d.cost_after)}")
    if d.new_violations:
        mandatory = sum(1 for v in d.new_violations if str(v.get("enforcement", "")).lower() == "mandatory")
        parts.append(f"**{len(d.new_violations)} new policy violation(s)**"
                     + (f" ({mandatory} mandatory)" if mandatory else ""))
    if d.resolved_violations:
        parts.append(f"{len(d.resolved_violations)} violation(s) resolved")
    parts.append(f"{len(d.added)} to add, {len(d.changed)} to change, {len(d.removed)} to remove")
    return " · ".join(parts)


class _Budget:
    """Accumulates Markdown blocks in priority order without passing ``limit`` characters."""

    def __init__(self, limit: int, reserve: int) -> None:
        self.parts: list[str] = []
        self.limit = limit - reserve
        self.size = 0

    def room(self) -> int:
        return self.limit - self.size

    def fits(self, text: str) -> bool:
        return len(text) <= self.room()

    def add(self, text: str) -> bool:
        if not self.fits(text):
            return False
        self.parts.append(text)
        self.size += len(text)
        return True


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], max_rows: int = MAX_ROWS) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows[:max_rows]]
    text = "\n".join(lines) + "\n"
    if len(rows) > max_rows:
        text += f"\n_… and {len(rows) - max_rows} more rows (see `--json`)._\n"
    return text


def _placement_section(d: StackDiff) -> str:
    if not d.placements and not d.pools:
        return ""
    out = ["#### Placements\n"]
    rows: list[list[str]] = []
    for p in d.placements:
        if p.kind == "added":
            rows.append([f"➕ **{p.name}**", "added", "-", _cell(p.summary, 300)])
        elif p.kind == "removed":
            rows.append([f"➖ **{p.name}**", "removed", _cell(p.summary, 300), "-"])
        else:
            for i, c in enumerate(p.changes):
                rows.append([f"**{p.name}**" if i == 0 else "", c.field, _cell(c.before, 300), _cell(c.after, 300)])
    if rows:
        out.append(_table(["model", "", "before", "after"], rows))
    pool_rows: list[list[str]] = []
    for p in d.pools:
        if p.kind == "changed":
            for i, c in enumerate(p.changes):
                pool_rows.append([f"`{p.name}`" if i == 0 else "", c.field, _cell(c.before), _cell(c.after)])
        else:
            pool_rows.append([f"{'➕' if p.kind == 'added' else '➖'} `{p.name}`", p.kind, _cell(p.summary), ""])
    if pool_rows:
        out.append("\n<details><summary>GPU node groups</summary>\n\n"
                   + _table(["node group", "", "before", "after"], pool_rows) + "\n</details>\n")
    return "\n".join(out) + "\n"


def _cost_section(d: StackDiff) -> str:
    if d.cost_before is None or d.cost_after is None:
        return f"#### Monthly cost\n\n_Not compared: {_code(d.cost_note or 'unavailable', 400)}_\n\n"
    if abs(d.cost_after - d.cost_before) < 0.5 and not d.cost_lines:
        return ""
    out = [f"#### Monthly cost\n\n{_usd(d.cost_before)} → **{_usd(d.cost_after)}** "
           f"({_delta_usd(d.cost_before, d.cost_after)})\n"]
    if d.cost_lines:
        rows = [[_cell(c.field, 120), "-" if c.before is None else _usd(c.before),
                 "-" if c.after is None else _usd(c.after)] for c in d.cost_lines]
        out.append("\n<details><summary>Cost lines that changed</summary>\n\n"
                   + _table(["line", "before", "after"], rows) + "\n</details>\n")
    return "\n".join(out) + "\n"


def _policy_section(d: StackDiff) -> str:
    if d.policy_note:
        return ("#### Policy verdicts\n\n_Not compared: "
                f"{_code(d.policy_note, 400)}. Run `servekit audit --stack {d.stack}` where it is available._\n\n")
    if not d.new_violations and not d.resolved_violations:
        return ""
    out = ["#### Policy verdicts\n"]

    def rows(vs: Sequence[Mapping[str, Any]]) -> list[list[str]]:
        return [[_cell(v.get("policy", ""), 80), str(v.get("enforcement", "")), str(v.get("severity", "")),
                 _cell(v.get("resource", ""), 80), _cell(v.get("message", ""), 300)] for v in vs]

    header = ["policy", "enforcement", "severity", "resource", "message"]
    if d.new_violations:
        out.append(f"**New violations ({len(d.new_violations)})**\n\n" + _table(header, rows(d.new_violations)))
    if d.resolved_violations:
        out.append(f"<details><summary>Resolved violations ({len(d.resolved_violations)})</summary>\n\n"
                   + _table(header, rows(d.resolved_violations)) + "\n</details>\n")
    return "\n".join(out) + "\n"


def _warning_section(d: StackDiff) -> str:
    if not d.new_warnings and not d.gone_warnings:
        return ""
    lines = ["#### Plan warnings\n"]
    lines += [f"- ⚠️ new: {_code(w, 400)}" for w in d.new_warnings[:MAX_ROWS]]
    lines += [f"- gone: {_code(w, 400)}" for w in d.gone_warnings[:MAX_ROWS]]
    return "\n".join(lines) + "\n\n"


def _counts_section(d: StackDiff) -> str:
    if not (d.added or d.removed or d.changed):
        return ""
    add = Counter(r.type for r in d.added)
    rem = Counter(r.type for r in d.removed)
    chg = Counter(c.ref.type for c in d.changed)
    types = sorted(add.keys() | rem.keys() | chg.keys(), key=lambda t: (-(add[t] + rem[t] + chg[t]), t))
    rows = [[f"`{t}`", str(add[t] or ""), str(chg[t] or ""), str(rem[t] or "")] for t in types]
    return "#### Resources\n\n" + _table(["type", "add", "change", "remove"], rows) + "\n"


def _ref_list(title: str, refs: Sequence[ResourceRef], budget: _Budget) -> None:
    if not refs:
        return
    head = f"<details><summary>{title} ({len(refs)})</summary>\n\n"
    tail = "\n</details>\n\n"
    if not budget.fits(head + tail):
        return
    lines: list[str] = []
    size = len(head) + len(tail)
    for i, r in enumerate(refs):
        line = f"- `{r.type}` **{r.name}**\n"
        more = f"- _… and {len(refs) - i} more (see `--json`)_\n"
        if size + len(line) + len(more) > budget.room():
            lines.append(more)
            break
        lines.append(line)
        size += len(line)
    budget.add(head + "".join(lines) + tail)


def _text_lines_diff(path: str, before: str, after: str) -> list[str]:
    """A multi-line string (a rendered YAML, a script) as the lines that changed, each under its path."""
    out = []
    for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="", n=0):
        if line.startswith(("---", "+++", "@@")):
            continue
        out.append(f"{line[0]} {path}: {_code(line[1:])}")
    return out[:MAX_PROPS_PER_RESOURCE]


def _resource_block(c: ResourceChange) -> str:
    lines = []
    for p in c.properties[:MAX_PROPS_PER_RESOURCE]:
        if isinstance(p.before, str) and isinstance(p.after, str) and ("\n" in p.before or "\n" in p.after):
            lines += _text_lines_diff(p.path, p.before, p.after)
            continue
        if p.before is not MISSING:
            lines.append(f"- {p.path}: {_code(p.before)}")
        if p.after is not MISSING:
            lines.append(f"+ {p.path}: {_code(p.after)}")
    if len(c.properties) > MAX_PROPS_PER_RESOURCE:
        lines.append(f"# … and {len(c.properties) - MAX_PROPS_PER_RESOURCE} more properties")
    body = "\n".join(line.replace("```", "'''") for line in lines)
    return f"**{c.ref.name}** `{c.ref.type}`\n```diff\n{body}\n```\n"


def _property_section(d: StackDiff, budget: _Budget) -> None:
    if not d.changed:
        return
    head = f"<details><summary>Property changes ({len(d.changed)} resources)</summary>\n\n"
    tail = "\n</details>\n"
    blocks: list[str] = []
    size = len(head) + len(tail)
    for i, c in enumerate(d.changed):
        block = _resource_block(c)
        more = (f"_… {len(d.changed) - i} more changed resources not shown "
                "(run `servekit diff` locally or use `--json`)._\n")
        if size + len(block) + len(more) > budget.room():
            blocks.append(more)
            break
        blocks.append(block)
        size += len(block)
    budget.add(head + "".join(blocks) + tail)


def to_markdown(d: StackDiff, limit: int = MAX_MARKDOWN) -> str:
    """One PR comment, under ``limit`` characters, most important first."""
    top = [marker(d.stack)]
    if d.status == "unchanged":
        top.append(UNCHANGED_MARKER)
    title = f"### servekit diff: `{d.stack}`\n\n{_code(d.base.label, 120)} → {_code(d.head.label, 120)}\n"
    budget = _Budget(limit, reserve=200)
    budget.add("\n".join(top) + "\n" + title + "\n")
    if d.status == "error":
        side = d.head if d.head.error else d.base
        error = (side.error or "")[:4000].replace("```", "'''")
        budget.add(f"❌ **The stack does not plan at {side.label}.**\n\n```text\n{error}\n```\n")
        return "".join(budget.parts)
    if d.status == "unchanged":
        budget.add(f"✅ **No changes**: `{d.stack}` plans the same at both revisions (resources, placements"
                   + (", cost" if d.cost_before is not None else "")
                   + (", policy verdicts" if not d.policy_note else "") + ").\n")
        if d.policy_note:
            budget.add(f"\n_Policy verdicts were not compared: {_code(d.policy_note, 400)}._\n")
        return "".join(budget.parts)
    budget.add(_headline(d) + "\n\n")
    if d.base.error:
        budget.add(f"⚠️ The base did not plan ({_code(d.base.error, 600)}); everything at the head is shown as "
                   "added.\n\n")
    for section in (_placement_section(d), _cost_section(d), _policy_section(d), _warning_section(d),
                    _counts_section(d)):
        if section and not budget.add(section):
            budget.add("_… further sections left out to fit one comment; run `servekit diff --json`._\n")
            return "".join(budget.parts)
    _ref_list("Resources to add", d.added, budget)
    _ref_list("Resources to remove", d.removed, budget)
    _property_section(d, budget)
    return "".join(budget.parts)
