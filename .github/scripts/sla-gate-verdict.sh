#!/usr/bin/env bash
# After `pulumi up`: the in-cluster SLA gate Jobs' verdicts, into the job summary (deploy.yml).
#
# The gate (components/sla_gate.py) is a Kubernetes Job per model that runs `python -m loadtests.gate`
# and fails unless the verdict is PASS; `pulumi up` waits for it, so a failed gate already fails the up
# step. This step makes the verdict visible: it waits for every gate Job labelled
# servekit.io/role=sla-gate to finish, copies the tail of its log (the Markdown report and the JSON
# verdict) into $GITHUB_STEP_SUMMARY, and exits 1 if any Job failed or did not finish in time.
#
# Needs: pulumi (installed by pulumi/actions), kubectl, the stack's `kubeconfig` output, and a runner
# that can reach the cluster's API. Env: STACK (stack file name), STACK_NAME (backend stack name).
set -euo pipefail

SELECTOR="servekit.io/role=sla-gate"
TIMEOUT_S="${SLA_GATE_TIMEOUT_S:-3600}"
summary="${GITHUB_STEP_SUMMARY:-/dev/stdout}"

gate_enabled=$(.venv/bin/python -c "import sys; from servekit.stackfile import load_stack; print(str(load_stack(sys.argv[1]).sla_gate).lower())" "$STACK")
if [ "$gate_enabled" != "true" ]; then
  echo "### SLA gate: off for stack \`$STACK\` (servekit:slaGate: false)" >> "$summary"
  exit 0
fi

kubeconfig=$(mktemp)
trap 'rm -f "$kubeconfig"' EXIT
pulumi stack output kubeconfig --show-secrets --stack "$STACK_NAME" > "$kubeconfig"
export KUBECONFIG="$kubeconfig"

mapfile -t jobs < <(kubectl get jobs --all-namespaces -l "$SELECTOR" \
  -o jsonpath='{range .items[*]}{.metadata.namespace}{"/"}{.metadata.name}{"\n"}{end}')
if [ "${#jobs[@]}" -eq 0 ]; then
  {
    echo "### SLA gate: no gate Job in the cluster for \`$STACK\`"
    echo "Finished gate Jobs may have been removed by their TTL; \`pulumi up\` waits for the gate and fails"
    echo "when its verdict is not PASS, so this deploy's verdict is the up step's result."
  } >> "$summary"
  exit 0
fi

failed=0
for nsname in "${jobs[@]}"; do
  ns=${nsname%%/*}
  name=${nsname#*/}
  state="TIMED OUT after ${TIMEOUT_S}s"
  deadline=$(( $(date +%s) + TIMEOUT_S ))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    succeeded=$(kubectl get job "$name" -n "$ns" -o jsonpath='{.status.succeeded}')
    failures=$(kubectl get job "$name" -n "$ns" -o jsonpath='{.status.conditions[?(@.type=="Failed")].status}')
    if [ "${succeeded:-0}" -ge 1 ]; then state=PASS; break; fi
    if [ "$failures" = "True" ]; then state=FAILED; break; fi
    sleep 15
  done
  [ "$state" = "PASS" ] || failed=1
  {
    echo "### SLA gate \`$ns/$name\`: $state"
    echo '```text'
    kubectl logs "job/$name" -n "$ns" --tail=200 2>&1 || echo "(no log available)"
    echo '```'
  } >> "$summary"
done
exit "$failed"
