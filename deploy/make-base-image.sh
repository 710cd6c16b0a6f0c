#!/bin/sh
# Makes the Debian 12 base image that deploy/Dockerfile builds on, where no container registry is
# reachable: a minimal bookworm root from the Debian mirror (mmdebstrap), imported into podman. Does
# nothing when the image exists already.
#   make-base-image.sh [IMAGE]      default localhost/debian:bookworm-slim
set -eu
image=${1:-localhost/debian:bookworm-slim}
if podman image exists "$image"; then
  echo "make-base-image: $image exists"
  exit 0
fi
echo "make-base-image: building $image with mmdebstrap (a few minutes: it downloads the packages)"
mmdebstrap --quiet --variant=minbase bookworm - | podman import - "$image" >/dev/null
echo "make-base-image: $image ready"
