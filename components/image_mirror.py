"""Container images without internet: ECR pull-through cache rules and image reference rewriting.

With ``network.egress: none`` nodes reach AWS only through VPC endpoints, so every image must come
from the account's own ECR. A pull-through cache rule makes ECR fetch an upstream image on first
pull (ECR itself has internet; the nodes do not) and keep it:

    vllm/vllm-openai:v0.33.0
      -> <account>.dkr.ecr.<region>.amazonaws.com/docker-hub/vllm/vllm-openai:v0.33.0

Upstreams and credentials (AWS ECR user guide, "pull through cache" supported upstream registries):

======================  ==================  =========================================================
upstream                ECR prefix          credentials
======================  ==================  =========================================================
Docker Hub              ``docker-hub``      **required**: a Secrets Manager secret named
                                            ``ecr-pullthroughcache/docker-hub`` holding
                                            ``{"username": ..., "accessToken": ...}``
GitHub (ghcr.io)        ``ghcr``            **required**: ``ecr-pullthroughcache/ghcr``, a GitHub
                                            token with ``read:packages``
Kubernetes (k8s.io)     ``k8s``             none
Quay                    ``quay``            none
ECR Public              ``ecr-public``      none
======================  ==================  =========================================================

NVIDIA's ``nvcr.io`` is not a supported upstream, so an image from it cannot be mirrored this way;
``mirror_image`` refuses it with that message rather than emitting a reference that would never pull.

This component creates the rules and, for upstreams that need them, the *empty* secret (only its
name and KMS-encrypted shell): the credential value is put by an operator
(``aws secretsmanager put-secret-value``, docs/deploying-kubernetes.md) so it never passes through
Pulumi state. It also grants the node role the two extra ECR actions a pull-through pull needs
(``ecr:BatchImportUpstreamImage`` and ``ecr:CreateRepository`` on the cached prefixes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from servekit.errors import UserError


@dataclass(frozen=True)
class Upstream:
    host: str  # registry host as written in image references
    upstream_url: str  # what ECR's upstreamRegistryUrl takes
    prefix: str  # ECR repository prefix
    needs_credentials: bool
    library_prefix: bool = False  # Docker Hub: single-name images live under library/


UPSTREAMS: dict[str, Upstream] = {
    u.host: u
    for u in (
        Upstream("docker.io", "registry-1.docker.io", "docker-hub", True, library_prefix=True),
        Upstream("ghcr.io", "ghcr.io", "ghcr", True),
        Upstream("registry.k8s.io", "registry.k8s.io", "k8s", False),
        Upstream("quay.io", "quay.io", "quay", False),
        Upstream("public.ecr.aws", "public.ecr.aws", "ecr-public", False),
    )
}
_ALIASES = {"registry-1.docker.io": "docker.io", "index.docker.io": "docker.io"}


def split_image(image: str) -> tuple[str, str, str]:
    """``[host/]repo[:tag|@digest]`` -> (registry host, repository path, ``:tag`` or ``@digest``).

    A first path part is a host when it has a dot or a colon or is ``localhost`` (Docker's rule).
    """
    if "@" in image:
        name, ref = image.split("@", 1)
        ref = "@" + ref
    else:
        head, sep, tail = image.rpartition(":")
        name, ref = (head, ":" + tail) if sep and "/" not in tail else (image, "")
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        host, repo = _ALIASES.get(first, first), rest
    else:
        host, repo = "docker.io", name
    if not ref:
        raise UserError("image reference has no tag or digest (unpinned)", given=image)
    if ref in (":latest",):
        raise UserError("image reference uses :latest (unpinned)", given=image)
    return host, repo, ref


def registry_of(image: str) -> Upstream:
    host = split_image(image)[0]
    try:
        return UPSTREAMS[host]
    except KeyError:
        raise UserError(
            "this registry cannot be mirrored by an ECR pull-through cache, so the image cannot be pulled "
            "without internet egress", given=image, allowed=", ".join(sorted(UPSTREAMS)),
        ) from None


def mirrored_reference(image: str, ecr_registry: str) -> str:
    """The pull-through-cache reference for ``image`` in ``ecr_registry`` (``<acct>.dkr.ecr.<region>...``)."""
    host, repo, ref = split_image(image)
    up = registry_of(image)
    if up.library_prefix and "/" not in repo:
        repo = f"library/{repo}"
    del host
    return f"{ecr_registry}/{up.prefix}/{repo}{ref}"


def ecr_registry_host(account_id: str, region: str) -> str:
    return f"{account_id}.dkr.ecr.{region}.amazonaws.com"


@dataclass(frozen=True)
class ImageMirrorArgs:
    stack: str
    images: list[str]  # every upstream image the stack's pods use
    node_role_name: pulumi.Input[str] | None = None  # gets the pull-through-cache permissions
    tags: dict[str, str] = field(default_factory=dict)


class ImageMirror(pulumi.ComponentResource):
    """Pull-through cache rules for the registries of ``images``; ``reference(image)`` rewrites one."""

    registry: pulumi.Output[str]
    credential_secret_names: list[str]

    def __init__(self, name: str, args: ImageMirrorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:image_mirror:ImageMirror", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        upstreams = sorted({registry_of(i).host: registry_of(i) for i in args.images}.values(),
                           key=lambda u: u.prefix)
        identity = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(parent=self))
        region = aws.get_region_output(opts=pulumi.InvokeOutputOptions(parent=self))
        self.account_id: pulumi.Output[str] = identity.account_id
        self.region: pulumi.Output[str] = region.region
        self.registry = pulumi.Output.all(identity.account_id, region.region).apply(
            lambda a: ecr_registry_host(a[0], a[1]))
        self.credential_secret_names = []
        for up in upstreams:
            credential_arn: pulumi.Output[str] | None = None
            if up.needs_credentials:
                secret_name = f"ecr-pullthroughcache/{up.prefix}"  # ECR requires this name prefix
                secret = aws.secretsmanager.Secret(
                    f"{name}-{up.prefix}-credentials",
                    name=secret_name,
                    description=(f"servekit {args.stack}: {up.upstream_url} credentials for the ECR pull-through "
                                 "cache; put the value with `aws secretsmanager put-secret-value`"),
                    recovery_window_in_days=7,
                    tags=args.tags,
                    opts=child,
                )
                credential_arn = secret.arn
                self.credential_secret_names.append(secret_name)
            aws.ecr.PullThroughCacheRule(
                f"{name}-{up.prefix}",
                ecr_repository_prefix=up.prefix,
                upstream_registry_url=up.upstream_url,
                credential_arn=credential_arn,
                opts=child,
            )
        if args.node_role_name is not None and upstreams:
            aws.iam.RolePolicy(
                f"{name}-node-pull-through",
                role=args.node_role_name,
                policy=pulumi.Output.all(identity.account_id, region.region).apply(
                    lambda a: pull_through_policy(a[0], a[1], [u.prefix for u in upstreams])),
                opts=child,
            )
        self.register_outputs({"registry": self.registry, "credentialSecretNames": self.credential_secret_names})

    def reference(self, image: str) -> pulumi.Output[str]:
        registry_of(image)  # fail at plan time for an unsupported registry
        return self.registry.apply(lambda r: mirrored_reference(image, r))


def pull_through_policy(account_id: str, region: str, prefixes: list[str]) -> str:
    """What a node needs beyond AmazonEC2ContainerRegistryReadOnly to trigger a pull-through pull."""
    return json.dumps({
        "Version": "2012-10-17",
        "Statement": [{
            "Sid": "PullThroughCache", "Effect": "Allow",
            "Action": ["ecr:BatchImportUpstreamImage", "ecr:CreateRepository"],
            "Resource": [f"arn:aws:ecr:{region}:{account_id}:repository/{p}/*" for p in prefixes],
        }],
    })
