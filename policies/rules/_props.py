"""Reading engine-shaped resource properties without crashing on missing or unknown values.

The engine hands a policy the resource's inputs with engine (camelCase) names, wrapped in a proxy
that raises ``UnknownValueError`` when a value that is only computed at ``up`` is read during a
preview. The helpers here turn "absent" into ``None`` and "not known yet" into an :class:`Unknown`
marker, so a rule can check every field it *can* see and say precisely which one it could not.

A rule collects its verdicts in :class:`Findings`: violations are reported at once, and unknowns are
raised at the end as one ``UnknownValueError``. The engine turns that into its advisory
"can't run policy ... during preview" note, and the same rule runs again with known values at
``pulumi up`` - an unknown is never silently treated as compliant, and never as a violation.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from pulumi_policy import ReportViolation, Secret
from pulumi_policy.proxy import (
    UNKNOWN_ARCHIVE_VALUE,
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_ASSET_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_NUMBER_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
)

_SENTINELS = frozenset(
    {
        UNKNOWN_BOOLEAN_VALUE,
        UNKNOWN_NUMBER_VALUE,
        UNKNOWN_STRING_VALUE,
        UNKNOWN_ARRAY_VALUE,
        UNKNOWN_ASSET_VALUE,
        UNKNOWN_ARCHIVE_VALUE,
        UNKNOWN_OBJECT_VALUE,
    }
)

Key = str | int


class Unknown:
    """A value the engine cannot know during preview. Never truthy or falsy: check it explicitly."""

    __slots__ = ("path", "sentinel")

    def __init__(self, sentinel: str, path: Sequence[Key]) -> None:
        self.sentinel = sentinel
        self.path = [str(p) for p in path]

    def __bool__(self) -> bool:
        raise TypeError(f"unknown value at .{'.'.join(self.path)} used as a boolean; test isinstance(v, Unknown)")

    def __repr__(self) -> str:
        return f"Unknown(.{'.'.join(self.path)})"


def _sentinel(value: Any) -> str | None:
    return value if isinstance(value, str) and value in _SENTINELS else None


def get(obj: Any, *path: Key, at: Sequence[Key] = (), unwrap_secrets: bool = True) -> Any:
    """Walk ``path`` through mappings and sequences.

    Returns ``None`` when any step is absent (or has the wrong shape), an :class:`Unknown` when a
    step is not known yet, else the value. ``at`` is the path already walked to reach ``obj`` (for
    messages). ``pulumi_policy.Secret`` wrappers are unwrapped unless ``unwrap_secrets`` is false.
    """
    cur = obj
    walked: list[Key] = list(at)
    marker = _sentinel(cur)
    if marker is not None:
        return Unknown(marker, walked)
    for key in path:
        if cur is None or isinstance(cur, Unknown):
            return cur
        if isinstance(cur, Secret) and unwrap_secrets:
            cur = cur.value
        walked.append(key)
        try:
            if isinstance(key, int):
                if not isinstance(cur, Sequence) or isinstance(cur, str | bytes) or not -len(cur) <= key < len(cur):
                    return None
                cur = cur[key]
            else:
                if not isinstance(cur, Mapping) or key not in cur:
                    return None
                cur = cur[key]
        except UnknownValueError as e:
            return Unknown(e.unknown_type_sentinel, walked)
        marker = _sentinel(cur)
        if marker is not None:
            return Unknown(marker, walked)
    if isinstance(cur, Secret) and unwrap_secrets:
        cur = cur.value
    return cur


def items(obj: Any, *path: Key, at: Sequence[Key] = ()) -> list[Any] | Unknown:
    """The list at ``path`` as a plain list (absent or not a list -> ``[]``); elements may be :class:`Unknown`."""
    value = get(obj, *path, at=at)
    if value is None or isinstance(value, Unknown):
        return [] if value is None else value
    if not isinstance(value, Sequence) or isinstance(value, str | bytes):
        return []
    here = [*at, *path]
    return [get(value, i, at=here) for i in range(len(value))]


def entries(obj: Any, *path: Key, at: Sequence[Key] = ()) -> dict[str, Any] | Unknown:
    """The map at ``path`` as a plain dict (absent or not a map -> ``{}``); values may be :class:`Unknown`."""
    value = get(obj, *path, at=at)
    if value is None or isinstance(value, Unknown):
        return {} if value is None else value
    if not isinstance(value, Mapping):
        return {}
    here = [*at, *path]
    return {str(k): get(value, k, at=here) for k in value}


def flag(value: Any) -> bool | Unknown | None:
    """A boolean input; the AWS provider types some of them as strings ("true"/"false")."""
    if value is None or isinstance(value, Unknown):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        low = value.strip().lower()
        if low == "true":
            return True
        if low == "false":
            return False
    return None


def number(value: Any) -> float | Unknown | None:
    """A finite number from an int, a float (the engine sends every number as a float) or a numeric string."""
    if isinstance(value, bool):
        return None
    if value is None or isinstance(value, Unknown):
        return value
    try:
        result = float(value)
    except (TypeError, ValueError):
        return None
    return result if math.isfinite(result) else None


def text(value: Any) -> str | Unknown | None:
    """A non-empty string, else ``None``."""
    if isinstance(value, Unknown):
        return value
    if isinstance(value, str) and value.strip():
        return value
    return None


def json_doc(value: Any) -> Any:
    """A JSON document given either as a string (the usual input form) or as an object."""
    if value is None or isinstance(value, Unknown):
        return value
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return plain(value)


def plain(value: Any, at: Sequence[Key] = ()) -> Any:
    """Deep-copy a (possibly proxied) value into dicts and lists; unknown leaves become :class:`Unknown`."""
    value = get(value, at=at)
    if isinstance(value, Mapping):
        return {str(k): plain(get(value, k, at=at), [*at, k]) for k in value}
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return [plain(get(value, i, at=at), [*at, i]) for i in range(len(value))]
    return value


def first_unknown(value: Any) -> Unknown | None:
    """The first :class:`Unknown` inside a value built by :func:`plain`, if any."""
    if isinstance(value, Unknown):
        return value
    children = value.values() if isinstance(value, dict) else value if isinstance(value, list) else ()
    for child in children:
        found = first_unknown(child)
        if found is not None:
            return found
    return None


def is_world(cidr: Any) -> bool:
    """True for a CIDR that covers the whole address space (``0.0.0.0/0``, ``::/0``)."""
    if not isinstance(cidr, str):
        return False
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen == 0
    except ValueError:
        return False


def prefix_length(cidr: Any) -> int | None:
    if not isinstance(cidr, str):
        return None
    try:
        return ipaddress.ip_network(cidr.strip(), strict=False).prefixlen
    except ValueError:
        return None


class Findings:
    """Collects one validation's verdicts: violations go straight to the engine, unknowns are raised last."""

    def __init__(self, report: ReportViolation) -> None:
        self._report = report
        self.unknowns: list[Unknown] = []
        self.count = 0

    def violation(self, message: str, urn: str | None = None) -> None:
        self.count += 1
        self._report(message, urn)

    def unknown(self, value: Unknown) -> None:
        self.unknowns.append(value)

    def known(self, value: Any) -> bool:
        """True if ``value`` is known; records it as unknown otherwise."""
        if isinstance(value, Unknown):
            self.unknowns.append(value)
            return False
        return True

    def done(self) -> None:
        """Raise the first unknown as the engine's ``UnknownValueError`` (after every known check ran)."""
        if self.unknowns:
            first = self.unknowns[0]
            raise UnknownValueError(first.sentinel, first.path)


def iter_known(values: list[Any] | Unknown, findings: Findings) -> Iterator[Any]:
    """Yield the known elements of ``values``; record the unknown ones (or the whole list) in ``findings``."""
    if isinstance(values, Unknown):
        findings.unknown(values)
        return
    for v in values:
        if isinstance(v, Unknown):
            findings.unknown(v)
        else:
            yield v
