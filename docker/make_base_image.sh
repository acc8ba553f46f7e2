#!/usr/bin/env bash
# Make a Debian bookworm base image on this machine, for hosts that cannot pull images:
# debootstrap's minimal variant, imported as an image. The Dockerfile installs Python 3.11
# from Debian's packages on top of it (BASE_IMAGE=<tag>).
#
#   docker/make_base_image.sh [TAG]        (default engram-base:bookworm; needs root and debootstrap)
#
# An image that already carries TAG is kept as it is.
set -euo pipefail
tag=${1:-engram-base:bookworm}
if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "$tag is already there"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is missing: apt-get install debootstrap" >&2; exit 2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
debootstrap --variant=minbase bookworm "$work/rootfs" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 20 "$work/debootstrap.log" >&2; exit 1; }
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
tar -C "$work/rootfs" -c . | docker import - "$tag" >/dev/null
echo "made $tag"
