#!/usr/bin/env bash
# Build the local control plane (etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, kubectl, kwok) and the real node (kubelet, containerd) from the Go module proxy, cached by version
# outside the clone. Rebuilds only what is missing or reports the wrong version.
#
#   deploy/controlplane/build.sh            # default versions (deploy/controlplane/versions.env)
#   K8S_VERSION=1.34.4 deploy/controlplane/build.sh
#   deploy/controlplane/build.sh helm       # the helm CLI for chart tests (prints its bin dir)
#   deploy/controlplane/build.sh kind       # the kind CLI for make kind-up (prints its bin dir)
#
# Prints the bin directory of the requested Kubernetes version on its last line.
# Why wrapper modules: k8s.io/kubernetes's go.mod replaces every staging module
# with ./staging/..., so `go install` refuses it; a wrapper that requires and
# replaces each staging module at v0.Y.Z builds it (see docs/DESIGN.md).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
K8S_VERSION="${K8S_VERSION:-$DEFAULT_K8S_VERSION}"
K8S_VERSION="${K8S_VERSION#v}"
ETCD_VERSION="${ETCD_VERSION:-$DEFAULT_ETCD_VERSION}"
KWOK_VERSION="${KWOK_VERSION:-$DEFAULT_KWOK_VERSION}"
HELM_VERSION="${HELM_VERSION:-$DEFAULT_HELM_VERSION}"
KIND_VERSION="${KIND_VERSION:-$DEFAULT_KIND_VERSION}"
CONTAINERD_VERSION="${CONTAINERD_VERSION:-$DEFAULT_CONTAINERD_VERSION}"
cache="${GPUDRA_CACHE:-$HOME/.cache/gpudra}"
export GOFLAGS="${GOFLAGS:-} -mod=mod"
export CGO_ENABLED=0
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { echo "[controlplane-build] $*" >&2; }

# go_quiet WHAT CMD...: run a go command with its "go: downloading" lines summarized (one line
# per 25 modules instead of hundreds) and a line every minute while it runs, so a cold build
# says what it is doing and for how long
go_quiet() {
  local what="$1" start beat rc=0
  shift
  start="$(date +%s)"
  ( while sleep 60; do log "$what: still building ($(( ($(date +%s) - start) / 60 )) min so far)"; done ) &
  beat=$!
  "$@" 2> >(awk -v what="$what" '
    /^go: downloading / { n++; if (n % 25 == 1) { printf "[controlplane-build] %s: downloading Go modules (%d so far)\n", what, n > "/dev/stderr"; fflush("/dev/stderr") } next }
    { print > "/dev/stderr"; fflush("/dev/stderr") }') || rc=$?
  kill "$beat" 2>/dev/null || true
  wait "$beat" 2>/dev/null || true
  if (( rc == 0 )); then log "$what: done in $(( $(date +%s) - start )) s"; fi
  return "$rc"
}

have_version() { # binary expected-substring
  [[ -x "$1" ]] && "$1" --version 2>/dev/null | grep -q -- "$2"
}

build_k8s() {
  local v="$K8S_VERSION" minor out mod
  minor="$(cut -d. -f2 <<<"$v")"
  out="$cache/k8s-v$v/bin"
  if have_version "$out/kube-apiserver" "v$v" && have_version "$out/kube-scheduler" "v$v" \
     && have_version "$out/kube-controller-manager" "v$v" && [[ -x "$out/kubectl" ]] \
     && have_version "$out/kubelet" "v$v"; then
    log "kubernetes v$v: cached in $out"; return
  fi
  mod="$here/modules/k8s-v$v"
  if [[ ! -f "$mod/go.mod" ]]; then
    # A version we do not ship a wrapper for: generate one in the cache.
    mod="$cache/k8s-v$v/module"
    log "kubernetes v$v: generating wrapper module in $mod"
    python3 "$here/gen_k8s_module.py" "$v" "$mod"
    (cd "$mod" && go_quiet "kubernetes v$v (go mod tidy)" go mod tidy)
  fi
  local ldf="-s -w" date
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldf+=" -X '$pkg.gitVersion=v$v' -X '$pkg.gitMajor=1' -X '$pkg.gitMinor=$minor'"
    ldf+=" -X '$pkg.gitTreeState=clean' -X '$pkg.buildDate=$date'"
  done
  mkdir -p "$out"
  log "kubernetes v$v: building (cold builds take tens of minutes on 2 cores)"
  (cd "$mod" && go_quiet "kubernetes v$v" go build -trimpath -tags selinux,notest,grpcnotrace -ldflags "$ldf" -o "$out/" \
     k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
     k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet)
}

build_etcd() {
  local out="$cache/etcd-v$ETCD_VERSION/bin" mod="$here/modules/etcd"
  if have_version "$out/etcd" "$ETCD_VERSION"; then log "etcd v$ETCD_VERSION: cached"; return; fi
  mkdir -p "$out"
  log "etcd v$ETCD_VERSION: building"
  (cd "$mod" && go_quiet "etcd v$ETCD_VERSION" go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3)
}

build_kwok() {
  local out="$cache/kwok-v$KWOK_VERSION/bin" mod="$here/modules/kwok"
  if have_version "$out/kwok" "$KWOK_VERSION"; then log "kwok v$KWOK_VERSION: cached"; return; fi
  mkdir -p "$out"
  log "kwok v$KWOK_VERSION: building"
  (cd "$mod" && go_quiet "kwok v$KWOK_VERSION" go build -trimpath \
     -ldflags "-s -w" \
     -o "$out/kwok" sigs.k8s.io/kwok/cmd/kwok)
}

build_containerd() {  # the real node's container runtime (kubelet is built with Kubernetes)
  local v="$CONTAINERD_VERSION" out="$cache/containerd-v$CONTAINERD_VERSION/bin"
  local mod="$here/modules/containerd" pkg=github.com/containerd/containerd/v2
  if have_version "$out/containerd" "v$v" && [[ -x "$out/ctr" && -x "$out/containerd-shim-runc-v2" ]]; then
    log "containerd v$v: cached"; return
  fi
  mkdir -p "$out"
  log "containerd v$v: building"
  local tags="urfave_cli_no_docs no_btrfs no_devmapper no_zfs no_aufs osusergo netgo static_build"
  local ldf="-s -w -X $pkg/version.Version=v$v"
  (cd "$mod" && go_quiet "containerd v$v" go build -trimpath -tags "$tags" -ldflags "$ldf" -o "$out/" \
     $pkg/cmd/containerd $pkg/cmd/ctr \
   && go_quiet "containerd v$v (shim)" go build -trimpath -tags "$tags no_grpc" -ldflags "$ldf" -o "$out/" $pkg/cmd/containerd-shim-runc-v2)
}

build_helm() {
  local out="$cache/helm-v$HELM_VERSION/bin" mod="$here/modules/helm"
  if [[ -x "$out/helm" ]] && "$out/helm" version --short 2>/dev/null | grep -qx "v$HELM_VERSION"; then log "helm v$HELM_VERSION: cached"; return; fi
  mkdir -p "$out"
  log "helm v$HELM_VERSION: building"
  (cd "$mod" && go_quiet "helm v$HELM_VERSION" go build -trimpath \
     -ldflags "-s -w -X helm.sh/helm/v4/internal/version.version=v$HELM_VERSION" \
     -o "$out/helm" helm.sh/helm/v4/cmd/helm)
}

build_kind() {  # only for make kind-up / kind-e2e (they need Docker); not part of "all"
  local out="$cache/kind-v$KIND_VERSION/bin" mod="$here/modules/kind"
  if have_version "$out/kind" "$KIND_VERSION"; then log "kind v$KIND_VERSION: cached"; return; fi
  mkdir -p "$out"
  log "kind v$KIND_VERSION: building"
  (cd "$mod" && go_quiet "kind v$KIND_VERSION" go build -trimpath -ldflags "-s -w" -o "$out/kind" sigs.k8s.io/kind)
}

what="${1:-all}"
case "$what" in
  all)
    log "building what is not cached yet: etcd, kwok, helm, containerd, kubernetes v$K8S_VERSION (in $cache)"
    build_etcd; build_kwok; build_helm; build_containerd; build_k8s ;;
  containerd) build_containerd; echo "$cache/containerd-v$CONTAINERD_VERSION/bin"; exit 0 ;;
  k8s) build_k8s ;;
  etcd) build_etcd ;;
  kwok) build_kwok ;;
  helm) build_helm; echo "$cache/helm-v$HELM_VERSION/bin"; exit 0 ;;
  kind) build_kind; echo "$cache/kind-v$KIND_VERSION/bin"; exit 0 ;;
  *) echo "usage: $0 [all|k8s|etcd|kwok|helm|containerd|kind]" >&2; exit 2 ;;
esac
echo "$cache/k8s-v$K8S_VERSION/bin"
