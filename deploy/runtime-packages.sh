#!/bin/sh
# Prints the Debian packages that hold the shared libraries the given binaries load, one line, space
# separated: what an image stage must install to run binaries built on this same Debian release
# (deploy/Dockerfile, target runtime-prebuilt).
#   runtime-packages.sh BINARY...
set -eu
libs=$(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// {print $3}' | sort -u)
[ -n "$libs" ] || { echo "runtime-packages: ldd found no shared library in $*" >&2; exit 1; }
packages=
for lib in $libs; do
  # With a merged /usr, ldd and dpkg may name the same file with or without the /usr prefix.
  owner=$(dpkg -S "$lib" 2>/dev/null || dpkg -S "/usr$lib" 2>/dev/null || dpkg -S "${lib#/usr}" 2>/dev/null) ||
    { echo "runtime-packages: no Debian package holds $lib" >&2; exit 1; }
  packages="$packages ${owner%%:*}"
done
echo $packages | tr ' ' '\n' | sort -u | tr '\n' ' ' | sed 's/ $//'
echo
