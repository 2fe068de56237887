#!/usr/bin/env bash
# Host packages of the local real node (kubelet + containerd tier of the tests and of
# `make demo-real`): Debian's runc, CNI plugins and a static busybox (the pause and workload
# images are built from it). Installs only what is missing; needs root (apt-get).
#   deploy/realnode/prereqs.sh          # or: make node-prereqs
set -euo pipefail
need=()
[[ -x /usr/sbin/runc ]] || need+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/host-local && -x /usr/lib/cni/loopback ]] \
  || need+=(containernetworking-plugins)
# busybox-static: a /bin/busybox that is statically linked (the images have no libc)
if ! [[ -x /bin/busybox ]] || ldd /bin/busybox >/dev/null 2>&1; then need+=(busybox-static); fi
command -v iptables-save >/dev/null || need+=(iptables)
command -v ip >/dev/null || need+=(iproute2)
command -v nft >/dev/null || need+=(nftables)  # to drop the nf_tables tables the kubelet made
# deploy/image/build.py (the chart test's image) assembles its base from Debian packages:
# apt must know them, and a fresh machine may come without package lists.
if [[ $(id -u) == 0 ]] && ! apt-cache show python3.11-minimal >/dev/null 2>&1; then
  echo "[node-prereqs] apt has no package lists: apt-get update"
  apt-get update -qq
fi
if ((${#need[@]} == 0)); then echo "[node-prereqs] all present"; exit 0; fi
if [[ $(id -u) != 0 ]]; then
  echo "[node-prereqs] missing ${need[*]}; the real node needs root: run as root" \
       "(apt-get install ${need[*]}), or set GPUDRA_SKIP_REAL_NODE=1 to leave that tier out" >&2
  exit 1
fi
echo "[node-prereqs] installing ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
