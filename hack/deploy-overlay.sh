#!/usr/bin/env bash
# Writes a kustomize overlay of config/default (or config/policy) that sets
# Tandem's images:
#   hack/deploy-overlay.sh DIR INJECTOR_IMAGE AGENT_IMAGE PROXY_IMAGE [default|policy]
# The injector image goes through kustomize `images`; the agent and proxy
# images, which the injector writes into pods, through the tandem-images
# ConfigMap, and in policy mode also through the policies' defaults.
set -euo pipefail
[ $# -eq 4 ] || [ $# -eq 5 ] || { echo "usage: $0 DIR INJECTOR_IMAGE AGENT_IMAGE PROXY_IMAGE [default|policy]" >&2; exit 2; }
dir=$1 injector=$2 agent=$3 proxy=$4 mode=${5:-default}
case "$mode" in
  default|policy) ;;
  *) echo "$0: mode '$mode': accepted: default (webhook) or policy (admission policies)" >&2; exit 2 ;;
esac

# Split NAME[:TAG] where NAME may hold a registry port (host:5000/x).
name=$injector tag=latest
last=${injector##*/}
if [[ $last == *:* ]]; then
  name=${injector%:*}
  tag=${injector##*:}
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$dir"
rel=$(realpath --relative-to="$dir" "$root/config/$mode")
cat > "$dir/kustomization.yaml" <<YAML
resources:
- $rel
images:
- name: ghcr.io/tandem-mesh/injector
  newName: $name
  newTag: "$tag"
configMapGenerator:
- name: tandem-images
  namespace: tandem-system
  behavior: replace
  literals:
  - agent-image=$agent
  - proxy-image=$proxy
YAML
if [ "$mode" = policy ]; then
  cat >> "$dir/kustomization.yaml" <<YAML
patches:
- patch: |-
    apiVersion: v1
    kind: ConfigMap
    metadata:
      name: tandem-injection-defaults
      namespace: tandem-system
    data:
      agent-image: "$agent"
      proxy-image: "$proxy"
YAML
fi
echo "$dir/kustomization.yaml"
