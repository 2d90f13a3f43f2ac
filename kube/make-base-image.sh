#!/usr/bin/env bash
# Make a Python 3.11 base image with no container registry: debootstrap a minimal Debian
# bookworm, slim it and `podman import` it. CI on machines without a registry uses it as
# BASE_IMAGE; everywhere else the Dockerfiles' default (the official python slim image) is used.
#   usage: kube/make-base-image.sh [TAG] [ROOTFS_DIR]
set -euo pipefail
TAG=${1:-localhost/python-base:3.11}
ROOT=${2:-/var/tmp/mlsp-python-base-rootfs}
MIRROR=${DEBIAN_MIRROR:-$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
PKGS=python3,python3-venv,python3-pip,python-is-python3,ca-certificates
if [ ! -x "$ROOT/usr/bin/python3" ]; then
  rm -rf "$ROOT"
  debootstrap --variant=minbase --include="$PKGS" bookworm "$ROOT" "$MIRROR"
fi
# slim: package caches, docs, man pages, locales, bytecode
rm -rf "$ROOT"/var/cache/apt/archives/*.deb "$ROOT"/var/cache/apt/*.bin \
       "$ROOT"/var/lib/apt/lists/* "$ROOT"/usr/share/doc/* "$ROOT"/usr/share/man/* \
       "$ROOT"/usr/share/info/* "$ROOT"/var/log/*.log "$ROOT"/var/cache/debconf/*-old
find "$ROOT"/usr/share/locale -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} +
find "$ROOT"/usr/lib/python3* -name __pycache__ -type d -prune -exec rm -rf {} +
# like the official image: no PEP 668 marker, so `pip install` works in a build stage
rm -f "$ROOT"/usr/lib/python3.*/EXTERNALLY-MANAGED
podman rmi -f "$TAG" >/dev/null 2>&1 || true
tar -C "$ROOT" --numeric-owner -c . | podman import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["python3"]' \
  - "$TAG" >/dev/null
podman image ls "$TAG"
