#!/usr/bin/env bash
# Container tooling for `make verify` on a Debian machine with no Docker engine and no
# registry (CI). Idempotent; a machine that already builds and runs containers skips it.
#   1. podman + runc (+ debootstrap for a base image), from apt
#   2. runc as OCI runtime and no default ulimits, where containers.conf is absent
#      (crun fails on hybrid cgroups; setting rlimits is not permitted in this sandbox)
#   3. BASE_IMAGE=localhost/...: make that base image with debootstrap if missing
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
for tool in podman runc debootstrap; do command -v "$tool" >/dev/null || need+=("$tool"); done
if [ ${#need[@]} -gt 0 ]; then
  [ "$(id -u)" = 0 ] || { echo "install: ${need[*]} (needs root)"; exit 1; }
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ "$(id -u)" = 0 ] && [ ! -s /etc/containers/containers.conf ]; then
  mkdir -p /etc/containers
  printf '[containers]\ndefault_ulimits = []\n\n[engine]\nruntime = "runc"\n' > /etc/containers/containers.conf
fi
case "${BASE_IMAGE:-}" in
  localhost/*) podman image exists "$BASE_IMAGE" || bash kube/make-base-image.sh "$BASE_IMAGE" ;;
esac
