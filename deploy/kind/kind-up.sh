#!/usr/bin/env bash
# `make kind-up`: a kind cluster with GPU-labelled worker nodes (deploy/kind/kind-config.yaml), fake
# `nvidia.com/gpu` capacity on them, the hexrl image built and loaded, and the Helm chart installed.
#
# Needs a Docker engine, kind and kubectl. Our CI machines have no Docker engine, so this path is NOT
# tested there — the tested path is the kwok-based local cluster (`make run`, `make test`).
#
# Environment: HELM (helm binary; `make kind-up` passes the pinned one), KIND_CLUSTER (default hexrl),
# HEXRL_IMAGE (default hexrl/hexrl:dev), IMAGE_EXTRAS (pip extras baked into the image, e.g. workers).
set -euo pipefail
cd "$(dirname "$0")/../.."

HELM=${HELM:-helm}
CLUSTER=${KIND_CLUSTER:-hexrl}
IMAGE=${HEXRL_IMAGE:-hexrl/hexrl:dev}
CTX="kind-${CLUSTER}"

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "kind-up: '$1' is not on PATH; $2" >&2; exit 1; }
}
need docker "this path needs Docker; without it use 'make run' (the GPU-less demo on a local control plane)"
docker info >/dev/null 2>&1 || {
  echo "kind-up: the Docker engine is not reachable (is the daemon running, may this user use it?)" >&2; exit 1; }
need kind "install kind (e.g. 'go install sigs.k8s.io/kind@latest') and try again"
need kubectl "install kubectl matching your kind node image"
command -v "$HELM" >/dev/null 2>&1 || { echo "kind-up: helm not found as '$HELM'; run 'make chart-tools'" >&2; exit 1; }

if ! kind get clusters 2>/dev/null | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml
fi

# Advertise GPUs as an extended resource on the labelled nodes (no device plugin: nothing runs on a GPU,
# but kube-scheduler places pods that request nvidia.com/gpu exactly as on a real GPU cluster).
for node in $(kubectl --context "$CTX" get nodes -l nvidia.com/gpu.product -o name); do
  count=$(kubectl --context "$CTX" get "$node" -o jsonpath='{.metadata.labels.nvidia\.com/gpu\.count}')
  kubectl --context "$CTX" patch "$node" --subresource=status --type=json \
    -p "[{\"op\":\"add\",\"path\":\"/status/capacity/nvidia.com~1gpu\",\"value\":\"${count}\"}]" >/dev/null
  echo "kind-up: ${node#node/} advertises ${count} nvidia.com/gpu"
done

docker build -t "$IMAGE" --build-arg EXTRAS="${IMAGE_EXTRAS:-}" -f deploy/kind/Dockerfile .
kind load docker-image "$IMAGE" --name "$CLUSTER"

"$HELM" upgrade --install hexrl charts/hexrl --kube-context "$CTX" --namespace hexrl-system --create-namespace \
  --set image.repository="${IMAGE%:*}" --set image.tag="${IMAGE##*:}" --set image.pullPolicy=Never --wait --timeout 5m

cat <<DONE

hexrl is installed in kind cluster '${CLUSTER}' (context ${CTX}).
  kubectl --context ${CTX} get nodes -L nvidia.com/gpu.product,hexrl.dev/pool,karpenter.sh/capacity-type
  kubectl --context ${CTX} apply -f manifests/examples/rljob.yaml && kubectl --context ${CTX} get rlj -w
Remove it with: kind delete cluster --name ${CLUSTER}
DONE
