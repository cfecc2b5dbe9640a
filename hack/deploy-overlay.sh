#!/usr/bin/env bash
# Writes a kustomize overlay of config/default that sets Tandem's images:
#   hack/deploy-overlay.sh DIR INJECTOR_IMAGE AGENT_IMAGE PROXY_IMAGE
# The injector image goes through kustomize `images`; the agent and proxy
# images, which the injector writes into pods, through the tandem-images ConfigMap.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 DIR INJECTOR_IMAGE AGENT_IMAGE PROXY_IMAGE" >&2; exit 2; }
dir=$1 injector=$2 agent=$3 proxy=$4

# Split NAME[:TAG] where NAME may hold a registry port (host:5000/x).
name=$injector tag=latest
last=${injector##*/}
if [[ $last == *:* ]]; then
  name=${injector%:*}
  tag=${injector##*:}
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
mkdir -p "$dir"
rel=$(realpath --relative-to="$dir" "$root/config/default")
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
echo "$dir/kustomization.yaml"
