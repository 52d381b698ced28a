"""Specs for policies/rules/tagging.py: owner, cost-center and data-classification on every taggable AWS resource."""

from __future__ import annotations

import importlib
import warnings
from copy import deepcopy

import pytest
from fixtures import GOOD, PROVIDERS, aws_provider, evaluate, policy, provider_for, resource_args, run, violated

from policies.rules._aws import TAGGABLE

NAME = "required-tags"


def test_no_tags_anywhere() -> None:
    providers = deepcopy(PROVIDERS["prod"])
    providers["aws"] = aws_provider("us-east-1")  # no defaultTags
    found = evaluate(GOOD["prod"], "prod", providers=providers)
    assert {v.policy for v in found} == {NAME}
    # Judged: exactly the fixture's taggable types; not e.g. the bucket policy or public access block.
    expected = {n for n, r in GOOD["prod"].items() if r.type in TAGGABLE}
    assert {v.resource for v in found} == expected
    assert "model-store-policy" not in expected


def test_resource_tags_complete_the_provider_defaults() -> None:
    provider = provider_for("aws:s3/bucket:Bucket", {"aws": aws_provider(tags={"owner": "a", "cost-center": "b"})})
    props = {"tags": {"data-classification": "internal"}}
    assert run(policy(NAME), resource_args("aws:s3/bucket:Bucket", props, provider=provider)) == []
    [message] = run(policy(NAME), resource_args("aws:s3/bucket:Bucket", {}, provider=provider))
    assert "data-classification" in message and "owner" not in message


def test_classification_must_fit_the_stack() -> None:
    s = deepcopy(GOOD["regulated"])
    s["model-store"].props["tags"] = {"data-classification": "internal"}  # overrides the provider's "restricted"
    [v] = evaluate(s, "regulated")
    assert (v.policy, v.resource) == (NAME, "model-store")


def test_empty_value_is_missing() -> None:
    s = deepcopy(GOOD["prod"])
    s["alarms"].props["tags"] = {"owner": " "}
    assert violated(s, "prod") == {NAME}


def test_any_aws_resource_with_a_tags_input_is_judged() -> None:
    assert run(policy(NAME), resource_args("aws:sqs/queue:Queue", {"tags": {}})) != []
    assert run(policy(NAME), resource_args("aws:sqs/queue:Queue", {})) == []  # unknown type, no tags input


@pytest.mark.parametrize("token", sorted(TAGGABLE))
def test_taggable_types_really_take_tags(token: str) -> None:
    # Independent check against the pulumi-aws SDK: the resource's Args class has a `tags` input.
    _, path, cls = token.split(":")
    with warnings.catch_warnings():  # pulumi_aws.s3 warns about its own deprecated V2 aliases when loaded
        warnings.simplefilter("ignore", DeprecationWarning)
        module = importlib.import_module(f"pulumi_aws.{path.split('/')[0]}")
        args_class = getattr(module, f"{cls}Args")  # the SDK loads submodules lazily, on attribute access
    assert isinstance(getattr(args_class, "tags", None), property), token
