#!/usr/bin/env bash
# End to end on a real cluster, for machines with Docker and kind:
# creates a kind cluster, installs cert-manager and Tandem, runs the greeter
# example in a labeled namespace and checks that one client's requests reach
# all three server pods.
#
#   hack/e2e-kind.sh            # create (or reuse) the cluster and test
#   KEEP=1 hack/e2e-kind.sh     # leave the cluster running afterwards
set -euo pipefail

CLUSTER=${CLUSTER:-tandem-e2e}
CERT_MANAGER_VERSION=${CERT_MANAGER_VERSION:-v1.21.2}
TAG=${TAG:-e2e}
IMG_INJECTOR=tandem/injector:$TAG
IMG_AGENT=tandem/agent:$TAG
IMG_GREETER=ghcr.io/tandem-mesh/greeter:latest
NS=greeter-e2e

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$root"
say() { printf '\n== %s\n' "$*"; }

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "e2e-kind: '$tool' is required on PATH" >&2; exit 1; }
done

if ! kind get clusters | grep -qx "$CLUSTER"; then
  say "creating kind cluster $CLUSTER"
  kind create cluster --name "$CLUSTER" --wait 120s
fi
kubectl config use-context "kind-$CLUSTER" >/dev/null
[ -n "${KEEP:-}" ] || trap 'kind delete cluster --name "$CLUSTER"' EXIT

say "installing cert-manager $CERT_MANAGER_VERSION"
kubectl apply -f "https://github.com/cert-manager/cert-manager/releases/download/$CERT_MANAGER_VERSION/cert-manager.yaml"
kubectl -n cert-manager rollout status deploy/cert-manager-webhook --timeout=180s

say "building and loading images"
make docker-build IMG_INJECTOR="$IMG_INJECTOR" IMG_AGENT="$IMG_AGENT"
docker build -f examples/greeter/Dockerfile -t "$IMG_GREETER" .
kind load docker-image --name "$CLUSTER" "$IMG_INJECTOR" "$IMG_AGENT" "$IMG_GREETER"

say "installing Tandem"
make deploy IMG_INJECTOR="$IMG_INJECTOR" IMG_AGENT="$IMG_AGENT"
kubectl -n tandem-system rollout status deploy/tandem-injector --timeout=180s
# The webhook answers only once cert-manager has filled in its caBundle.
for _ in $(seq 60); do
  ca=$(kubectl get mutatingwebhookconfiguration -l app.kubernetes.io/part-of=tandem \
        -o jsonpath='{.items[0].webhooks[0].clientConfig.caBundle}' 2>/dev/null || true)
  [ -n "$ca" ] && break
  sleep 2
done
[ -n "$ca" ] || { echo "e2e-kind: the webhook's caBundle was never injected" >&2; exit 1; }

say "running the greeter example in namespace $NS (labeled tandem.dev/inject=enabled)"
kubectl create namespace "$NS" --dry-run=client -o yaml | kubectl apply -f -
kubectl label namespace "$NS" tandem.dev/inject=enabled --overwrite
kubectl apply -n "$NS" -k examples/greeter/k8s
kubectl -n "$NS" rollout status deploy/greeter-server --timeout=180s
kubectl -n "$NS" rollout status deploy/greeter-client --timeout=180s

say "injected containers"
kubectl -n "$NS" get pods -o custom-columns='POD:.metadata.name,INIT:.spec.initContainers[*].name,CONTAINERS:.spec.containers[*].name'
for pod in $(kubectl -n "$NS" get pods -o name); do
  names=$(kubectl -n "$NS" get "$pod" -o jsonpath='{.spec.initContainers[*].name} {.spec.containers[*].name}')
  [[ $names == *tandem-proxy* ]] || { echo "e2e-kind: $pod was not injected ($names)" >&2; exit 1; }
done

say "30 requests from the client pod over one connection"
out=$(kubectl -n "$NS" exec deploy/greeter-client -c client -- \
        /usr/local/bin/greeter-client --target greeter:50051 -n 30)
echo "$out"
backends=$(echo "$out" | sed -n 's/^Greeting: hostname:\([^,]*\),.*/\1/p' | sort -u | wc -l)
if [ "$backends" -ne 3 ]; then
  echo "e2e-kind: requests reached $backends server pods, want 3" >&2
  exit 1
fi
say "PASS: one client's requests reached all 3 server pods"
