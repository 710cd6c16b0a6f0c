#!/bin/sh
# Assembles the runtime image's file system in /rootfs (deploy/Dockerfile runs it in the stage that holds
# the binaries): the binaries, the shared libraries they load (as ldd resolves them, with the dynamic
# loader), an unprivileged user, the default config, and the binary's capabilities as file capabilities,
# so that user gets them at exec without running as root.
#   image-rootfs.sh CONFIG SKPROXY HEALTHCHECK
set -eu
config=$1
skproxy=$2
healthcheck=$3
root=/rootfs
mkdir -p $root/usr/local/bin $root/etc/skproxy $root/tmp
chmod 1777 $root/tmp
cp "$skproxy" $root/usr/local/bin/skproxy
cp "$healthcheck" $root/usr/local/bin/skproxy-healthcheck
for lib in $(ldd "$skproxy" "$healthcheck" |
             awk '$2 == "=>" && $3 ~ /^\// {print $3} NF == 2 && $1 ~ /^\// {print $1}' | sort -u); do
  cp --parents -L "$lib" $root/
done
echo 'skproxy:x:65532:65532:skproxy:/nonexistent:/usr/sbin/nologin' > $root/etc/passwd
echo 'skproxy:x:65532:' > $root/etc/group
cp "$config" $root/etc/skproxy/skproxy.yaml
setcap cap_bpf,cap_perfmon,cap_net_admin,cap_net_bind_service+ep $root/usr/local/bin/skproxy
