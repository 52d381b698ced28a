"""The prop-reading helpers, and the promise that no rule crashes on missing, oddly shaped or unknown props."""

from __future__ import annotations

from copy import deepcopy
from typing import Any

import pytest
from fixtures import GOOD, PROVIDERS, Stack, provider_for, resource_args, run, stack_args
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pulumi_policy import ResourceValidationPolicy, Secret
from pulumi_policy.proxy import (
    UNKNOWN_ARRAY_VALUE,
    UNKNOWN_BOOLEAN_VALUE,
    UNKNOWN_OBJECT_VALUE,
    UNKNOWN_STRING_VALUE,
    UnknownValueError,
    unknown_checking_proxy,
)

from policies.rules import ALL_POLICIES
from policies.rules._props import Findings, Unknown, entries, flag, get, items, number


class TestGet:
    props = unknown_checking_proxy({"a": {"b": [1, {"c": UNKNOWN_STRING_VALUE}]}, "s": Secret("x"),
                                    "u": UNKNOWN_OBJECT_VALUE})

    def test_present_missing_and_misshapen(self) -> None:
        assert get(self.props, "a", "b", 0) == 1
        assert get(self.props, "a", "zz") is None
        assert get(self.props, "a", "b", 5) is None
        assert get(self.props, "a", "b", "c") is None  # a list indexed by a name
        assert get(self.props, "a", "b", 0, "c") is None  # a number walked into

    def test_unknown_carries_its_path(self) -> None:
        u = get(self.props, "a", "b", 1, "c")
        assert isinstance(u, Unknown) and u.path == ["a", "b", "1", "c"] and u.sentinel == UNKNOWN_STRING_VALUE
        assert isinstance(get(self.props, "u", "deeper"), Unknown)

    def test_unknown_refuses_to_be_a_boolean(self) -> None:
        with pytest.raises(TypeError, match="used as a boolean"):
            bool(get(self.props, "u"))

    def test_secrets(self) -> None:
        assert get(self.props, "s") == "x"
        assert isinstance(get(self.props, "s", unwrap_secrets=False), Secret)

    def test_collections(self) -> None:
        assert items(self.props, "nope") == []
        assert items(self.props, "a") == []  # a map is not a list
        assert entries(self.props, "a", "b") == {}
        assert isinstance(items(unknown_checking_proxy({"l": UNKNOWN_ARRAY_VALUE}), "l"), Unknown)

    @pytest.mark.parametrize(("value", "expected"), [(True, True), ("true", True), ("False", False), ("yes", None),
                                                     (None, None), (1, None)])
    def test_flag(self, value: object, expected: bool | None) -> None:
        assert flag(value) is expected

    @pytest.mark.parametrize(("value", "expected"), [(3, 3.0), ("2.5", 2.5), ("nan", None), (True, None),
                                                     ("x", None), (None, None)])
    def test_number(self, value: object, expected: float | None) -> None:
        assert number(value) == expected

    def test_findings_report_known_problems_before_raising_unknowns(self) -> None:
        seen: list[str] = []

        def report(message: str, urn: str | None = None) -> None:
            seen.append(message)

        f = Findings(report)
        f.unknown(Unknown(UNKNOWN_BOOLEAN_VALUE, ["x"]))
        f.violation("known problem")
        with pytest.raises(UnknownValueError) as e:
            f.done()
        assert seen == ["known problem"] and e.value.props == ["x"]


RESOURCE_POLICIES = [p for p in ALL_POLICIES if isinstance(p, ResourceValidationPolicy)]
TYPES = sorted({r.type for stack in GOOD.values() for r in stack.values()} | {
    "aws:ec2/instance:Instance", "aws:ec2/securityGroupRule:SecurityGroupRule", "kubernetes:core/v1:ConfigMap",
    "kubernetes:batch/v1:CronJob", "kubernetes:apps/v1:DaemonSet", "kubernetes:core/v1:Pod"})


@pytest.mark.parametrize("token", TYPES)
def test_empty_props_never_crash(token: str) -> None:
    provider = provider_for(token, PROVIDERS["prod"])
    for p in RESOURCE_POLICIES:
        run(p, resource_args(token, {}, provider=provider))  # violations are fine; exceptions are not


def _paths(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [here] if here else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*here, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*here, i))
    return out


JUNK = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8)
    | st.sampled_from([UNKNOWN_STRING_VALUE, UNKNOWN_BOOLEAN_VALUE, UNKNOWN_ARRAY_VALUE, UNKNOWN_OBJECT_VALUE,
                       "0.0.0.0/0", "true", "latest", "hf_" + "a" * 34]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
ALL_RESOURCES = [(kind, name) for kind, stack in GOOD.items() for name in stack]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(target=st.sampled_from(ALL_RESOURCES), pick=st.integers(min_value=0), junk=JUNK)
def test_mangled_props_never_crash(target: tuple[str, str], pick: int, junk: Any) -> None:
    # Replace one random subtree of a known-good resource with junk (incl. unknown sentinels) and run
    # the whole pack on the stack: each policy may report or raise UnknownValueError, nothing else.
    kind, name = target
    stack: Stack = deepcopy(GOOD[kind])
    paths = _paths(stack[name].props)
    if paths:
        *parents, last = paths[pick % len(paths)]
        node: Any = stack[name].props
        for key in parents:
            node = node[key]
        node[last] = junk
    else:
        stack[name].props = {"junk": junk}
    provider = provider_for(stack[name].type, PROVIDERS[kind])
    for p in ALL_POLICIES:
        try:
            if isinstance(p, ResourceValidationPolicy):
                run(p, resource_args(stack[name].type, stack[name].props, provider=provider))
            else:
                run(p, stack_args(stack, PROVIDERS[kind], {"noEgress": True, "budgetMonthlyUsd": 1.0,
                                                          "environment": "prod"}))
        except UnknownValueError:
            pass
