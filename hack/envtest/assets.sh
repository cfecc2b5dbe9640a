#!/usr/bin/env bash
# Prints the directory holding the control-plane binaries envtest needs
# (kube-apiserver, etcd; kube-controller-manager with --with-controller-manager).
# Progress goes to stderr, the directory alone to stdout, so callers can write
#   KUBEBUILDER_ASSETS="$(hack/envtest/assets.sh)"
#
# Where the binaries come from, first match wins:
#   1. $KUBEBUILDER_ASSETS, when it already holds them;
#   2. the cache bin/k8s/<version>/;
#   3. setup-envtest's download (bounded by a short timeout, as it needs the internet);
#   4. a build from Go modules: kube-apiserver and kube-controller-manager from
#      k8s.io/kubernetes (hack/envtest/kube), etcd from go.etcd.io/etcd/server/v3
#      (hack/envtest/etcd). Minutes on a first run, cached afterwards.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
want_kcm=false
for arg in "$@"; do
  case "$arg" in
    --with-controller-manager) want_kcm=true ;;
    -h|--help)
      sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
      exit 0 ;;
    *) echo "assets.sh: unknown argument '$arg' (accepted: --with-controller-manager)" >&2; exit 2 ;;
  esac
done

log() { echo "envtest: $*" >&2; }

# The Kubernetes release is the one hack/envtest/kube pins; it must match the
# k8s.io/api minor version of the project (checked by a test).
version=$(awk '$1 == "require" && $2 == "k8s.io/kubernetes" {print $3}' "$root/hack/envtest/kube/go.mod")
version=${version#v}
[ -n "$version" ] || { log "cannot read the k8s.io/kubernetes version from hack/envtest/kube/go.mod"; exit 1; }

needed=(kube-apiserver etcd)
$want_kcm && needed+=(kube-controller-manager)

has_all() {
  local dir=$1 b
  for b in "${needed[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

if [ -n "${KUBEBUILDER_ASSETS:-}" ] && has_all "$KUBEBUILDER_ASSETS"; then
  echo "$KUBEBUILDER_ASSETS"
  exit 0
fi

cache="$root/bin/k8s/$version"
if has_all "$cache"; then
  echo "$cache"
  exit 0
fi
mkdir -p "$cache"

# Several test packages may ask at once; one builds, the others wait for it.
exec 9>"$cache/.lock"
if ! flock -n 9; then
  log "another process is preparing bin/k8s/$version; waiting for it"
  flock 9
  if has_all "$cache"; then echo "$cache"; exit 0; fi
fi

# setup-envtest downloads prebuilt binaries; offline it fails, so bound it.
if ! $want_kcm && [ -z "${TANDEM_ENVTEST_NO_DOWNLOAD:-}" ]; then
  log "trying setup-envtest download of Kubernetes $version (20 s limit)"
  tmp=$(mktemp -d)
  if dir=$(cd "$root" && timeout 20 go run sigs.k8s.io/controller-runtime/tools/setup-envtest@v0.25.1 \
        use "$version" --bin-dir "$tmp" -p path 2>/dev/null) && [ -n "$dir" ] && \
     [ -x "$dir/kube-apiserver" ] && [ -x "$dir/etcd" ]; then
    cp "$dir/kube-apiserver" "$dir/etcd" "$cache/"
    rm -rf "$tmp"
    log "downloaded into bin/k8s/$version"
    echo "$cache"
    exit 0
  fi
  rm -rf "$tmp"
  log "download unavailable; building from Go modules instead"
fi

# A source build reports version v0.0.0 unless told; stamp the real release
# so /version answers as a released server would (the injector reads it).
minor=$(echo "$version" | cut -d. -f2)
kube_ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v$version \
 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean"

build() { # build <module dir> <package> <binary> <ldflags>
  local dir=$1 pkg=$2 bin=$3 ldflags=$4
  [ -x "$cache/$bin" ] && return 0
  log "building $bin from $pkg (first run only; kube-apiserver takes about 6 minutes on 2 cores)"
  # gobuild.sh prints how far the build is every 20 s, and when it is done.
  (cd "$dir" && CGO_ENABLED=0 PROGRESS_INTERVAL=20 "$root/hack/gobuild.sh" "envtest: $bin" \
    -trimpath -ldflags="$ldflags" -o "$cache/$bin.partial" "$pkg")
  mv "$cache/$bin.partial" "$cache/$bin"
}

build "$root/hack/envtest/etcd" go.etcd.io/etcd/server/v3 etcd "-s -w"
build "$root/hack/envtest/kube" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver "$kube_ldflags"
$want_kcm && build "$root/hack/envtest/kube" k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager "$kube_ldflags"

log "assets ready in bin/k8s/$version"
echo "$cache"
