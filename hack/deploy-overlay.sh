#!/usr/bin/env bash
# Writes a kustomize overlay that sets Tandem's images:
#   hack/deploy-overlay.sh DIR INJECTOR_IMAGE AGENT_IMAGE PROXY_IMAGE [default|policy] [init|cni]
# MODE default installs config/default (the webhook); policy installs
# config/policy (admission policies, no webhook).
# The injector image goes through kustomize `images`; the agent and proxy
# images, which the injector writes into pods, through the tandem-images
# ConfigMap, and in policy mode also through the policies' defaults.
# CAPTURE=cni adds config/cni (the tandem-cni DaemonSet, on the agent image)
# and makes CNI mode the injector's default.
set -euo pipefail
[ $# -ge 4 ] && [ $# -le 6 ] || { echo "usage: $0 DIR INJECTOR_IMAGE AGENT_IMAGE PROXY_IMAGE [default|policy] [init|cni]" >&2; exit 2; }
dir=$1 injector=$2 agent=$3 proxy=$4 mode=${5:-default} capture=${6:-init}
case "$mode" in
  default|policy) ;;
  *) echo "$0: mode '$mode': accepted: default (webhook) or policy (admission policies)" >&2; exit 2 ;;
esac
case $capture in
  init|cni) ;;
  *) echo "$0: capture mode '$capture': accepted: init or cni" >&2; exit 2 ;;
esac

# split IMAGE sets name and tag: NAME[:TAG] where NAME may hold a registry
# port (host:5000/x).
split() {
  name=$1 tag=latest
  local last=${1##*/}
  if [[ $last == *:* ]]; then
    name=${1%:*}
    tag=${1##*:}
  fi
}

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$dir"
rel=$(realpath --relative-to="$dir" "$root/config/$mode")
{
  echo "resources:"
  echo "- $rel"
  [ "$capture" = cni ] && echo "- $(realpath --relative-to="$dir" "$root/config/cni")"
  split "$injector"
  cat <<YAML
images:
- name: ghcr.io/tandem-mesh/injector
  newName: $name
  newTag: "$tag"
YAML
  if [ "$capture" = cni ]; then
    split "$agent"
    cat <<YAML
- name: ghcr.io/tandem-mesh/agent
  newName: $name
  newTag: "$tag"
YAML
  fi
  cat <<YAML
configMapGenerator:
- name: tandem-images
  namespace: tandem-system
  behavior: replace
  literals:
  - agent-image=$agent
  - proxy-image=$proxy
YAML
  [ "$capture" = cni ] || [ "$mode" = policy ] && echo "patches:"
  if [ "$capture" = cni ]; then
    cat <<YAML
- target:
    kind: Deployment
    name: tandem-injector
  patch: |-
    - op: add
      path: /spec/template/spec/containers/0/args/-
      value: --capture=cni
YAML
  fi
  if [ "$mode" = policy ]; then
    cat <<YAML
- patch: |-
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: tandem-injection-defaults
      namespace: tandem-system
    data:
      agent-image: "$agent"
      proxy-image: "$proxy"
      capture: "$capture"
YAML
  fi
} > "$dir/kustomization.yaml"
echo "$dir/kustomization.yaml"
