"""Preventive rolling restart of one model's Deployment (``restartEveryHours``).

The field report restarts vLLM every 24 h against slow host-memory creep. This is a CronJob that
runs ``kubectl rollout restart deployment/<model>`` in the model's namespace with a ServiceAccount
whose Role allows exactly ``get`` and ``patch`` on that one Deployment (``resourceNames``) and
nothing else. The restart is an ordinary rolling update, so the Deployment's strategy
(maxUnavailable 0, maxSurge 1) keeps every serving replica until its replacement is ready; the
PodDisruptionBudget guards evictions (node drains) that may happen at the same time.

Cron cannot express every interval. ``restart_schedule`` maps hours to a schedule that restarts
*at least* as often as asked (the point is to cap memory growth, so sooner is safe, later is not):

- below 24 h: the largest divisor of 24 not above N (5 h -> every 4 h; 7 h -> every 6 h);
- 24 h and more: every ``N // 24`` days on the day-of-month field (a month boundary can shorten one
  interval, never lengthen it); exactly 168 h is weekly.

The minute is derived from the model name, so several models do not restart in the same minute.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

# kubectl from the Kubernetes project's own registry, one minor per supported cluster version
# (kubectl supports one minor of skew either way).
KUBECTL_IMAGES = {
    "1.34": "registry.k8s.io/kubectl:v1.34.1",
    "1.35": "registry.k8s.io/kubectl:v1.35.0",
    "1.36": "registry.k8s.io/kubectl:v1.36.0",
}
NONROOT_UID = 65532


@dataclass(frozen=True)
class Schedule:
    cron: str
    effective_hours: int


def restart_schedule(hours: int, name: str) -> Schedule:
    if hours < 1:
        raise ValueError("restart interval must be at least one hour")
    minute = zlib.crc32(name.encode()) % 60
    if hours < 24:
        step = max(d for d in (1, 2, 3, 4, 6, 8, 12) if d <= hours)
        return Schedule(f"{minute} */{step} * * *" if step > 1 else f"{minute} * * * *", step)
    days = hours // 24
    if days == 7:
        return Schedule(f"{minute} 3 * * 0", 168)
    if days == 1:
        return Schedule(f"{minute} 3 * * *", 24)
    return Schedule(f"{minute} 3 */{days} * *", days * 24)


@dataclass(frozen=True)
class PreventiveRestartArgs:
    namespace: pulumi.Input[str]
    deployment_name: str
    every_hours: int
    kubectl_image: pulumi.Input[str]  # already rewritten to the ECR mirror when egress is none
    labels: dict[str, str]


class PreventiveRestart(pulumi.ComponentResource):
    schedule: str

    def __init__(self, name: str, args: PreventiveRestartArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("servekit:restart:PreventiveRestart", name, {}, opts)
        child = pulumi.ResourceOptions(parent=self)
        sched = restart_schedule(args.every_hours, args.deployment_name)
        self.schedule = sched.cron
        sa_name = f"{args.deployment_name}-restarter"
        labels = {**args.labels, "servekit.io/role": "restart", "app.kubernetes.io/component": "restart"}

        def meta(obj_name: str) -> k8s.meta.v1.ObjectMetaArgs:
            return k8s.meta.v1.ObjectMetaArgs(name=obj_name, namespace=args.namespace, labels=labels)

        sa = k8s.core.v1.ServiceAccount(f"{name}-sa", metadata=meta(sa_name), opts=child)
        role = k8s.rbac.v1.Role(
            f"{name}-role", metadata=meta(sa_name),
            rules=[k8s.rbac.v1.PolicyRuleArgs(
                api_groups=["apps"], resources=["deployments"], resource_names=[args.deployment_name],
                verbs=["get", "patch"],
            )],
            opts=child,
        )
        binding = k8s.rbac.v1.RoleBinding(
            f"{name}-binding", metadata=meta(sa_name),
            role_ref=k8s.rbac.v1.RoleRefArgs(api_group="rbac.authorization.k8s.io", kind="Role", name=sa_name),
            subjects=[k8s.rbac.v1.SubjectArgs(kind="ServiceAccount", name=sa_name, namespace=args.namespace)],
            opts=child,
        )
        pod_labels = {"servekit.io/role": "restart", "app.kubernetes.io/instance": f"{args.deployment_name}-restart"}
        # The namespace is default-deny (vllm_service.py); the restarter may reach DNS and the API server.
        k8s.networking.v1.NetworkPolicy(
            f"{name}-netpol", metadata=meta(sa_name),
            spec=k8s.networking.v1.NetworkPolicySpecArgs(
                pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels=pod_labels),
                policy_types=["Egress"],
                egress=[
                    _dns_egress(),
                    # The API server's private ENIs are in the VPC; with a public endpoint it is a
                    # public address. The only credential in this pod can patch one Deployment.
                    k8s.networking.v1.NetworkPolicyEgressRuleArgs(
                        ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=443)]),
                ],
            ),
            opts=child,
        )
        k8s.batch.v1.CronJob(
            f"{name}-cronjob",
            metadata=k8s.meta.v1.ObjectMetaArgs(
                name=f"{args.deployment_name}-restart", namespace=args.namespace, labels=labels,
                annotations={"servekit.io/restart-every-hours": str(args.every_hours),
                             "servekit.io/restart-effective-hours": str(sched.effective_hours)}),
            spec=k8s.batch.v1.CronJobSpecArgs(
                schedule=sched.cron,
                time_zone="Etc/UTC",
                concurrency_policy="Forbid",
                starting_deadline_seconds=600,
                successful_jobs_history_limit=1,
                failed_jobs_history_limit=3,
                job_template=k8s.batch.v1.JobTemplateSpecArgs(spec=k8s.batch.v1.JobSpecArgs(
                    backoff_limit=2,
                    active_deadline_seconds=300,
                    ttl_seconds_after_finished=86400,
                    template=k8s.core.v1.PodTemplateSpecArgs(
                        metadata=k8s.meta.v1.ObjectMetaArgs(labels={**labels, **pod_labels}),
                        spec=k8s.core.v1.PodSpecArgs(
                            service_account_name=sa_name,
                            restart_policy="Never",
                            security_context=k8s.core.v1.PodSecurityContextArgs(
                                run_as_non_root=True, run_as_user=NONROOT_UID, run_as_group=NONROOT_UID,
                                seccomp_profile=k8s.core.v1.SeccompProfileArgs(type="RuntimeDefault")),
                            containers=[k8s.core.v1.ContainerArgs(
                                name="kubectl",
                                image=args.kubectl_image,
                                command=["kubectl"],
                                args=["rollout", "restart", f"deployment/{args.deployment_name}",
                                      "--namespace", args.namespace],
                                env=[k8s.core.v1.EnvVarArgs(name="HOME", value="/tmp")],
                                resources=k8s.core.v1.ResourceRequirementsArgs(
                                    requests={"cpu": "50m", "memory": "64Mi"},
                                    limits={"cpu": "200m", "memory": "128Mi"}),
                                security_context=k8s.core.v1.SecurityContextArgs(
                                    allow_privilege_escalation=False, read_only_root_filesystem=True,
                                    privileged=False,
                                    capabilities=k8s.core.v1.CapabilitiesArgs(drop=["ALL"])),
                                volume_mounts=[k8s.core.v1.VolumeMountArgs(name="tmp", mount_path="/tmp")],
                            )],
                            volumes=[k8s.core.v1.VolumeArgs(
                                name="tmp", empty_dir=k8s.core.v1.EmptyDirVolumeSourceArgs(size_limit="64Mi"))],
                        ),
                    ),
                )),
            ),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[sa, role, binding]),
        )
        self.register_outputs({"schedule": self.schedule})


def _dns_egress() -> k8s.networking.v1.NetworkPolicyEgressRuleArgs:
    return k8s.networking.v1.NetworkPolicyEgressRuleArgs(
        to=[k8s.networking.v1.NetworkPolicyPeerArgs(
            namespace_selector=k8s.meta.v1.LabelSelectorArgs(
                match_labels={"kubernetes.io/metadata.name": "kube-system"}),
            pod_selector=k8s.meta.v1.LabelSelectorArgs(match_labels={"k8s-app": "kube-dns"}),
        )],
        ports=[k8s.networking.v1.NetworkPolicyPortArgs(protocol="UDP", port=53),
               k8s.networking.v1.NetworkPolicyPortArgs(protocol="TCP", port=53)],
    )
