#!/usr/bin/env bash
# Build a small Python base image for the image build tests, as an OCI
# image layout directory (skopeo copies it to a registry: `skopeo copy
# oci:DIR:latest docker://HOST/kubeless/base-python:3.11`).
#
# The root filesystem is assembled from this machine: Debian's python3 (the
# interpreter, its standard library without tests and tooling, and every
# shared library it and its C extension modules load, found with ldd) plus
# the `kubeless-runtime` host and its libraries. No daemon, no debootstrap:
# assembling takes a few seconds on 2 cores, where debootstrap of a minimal
# Debian takes minutes and needs the network.
#
# The result is cached outside the repository under $CACHE/base-images/,
# keyed by the Python version and the runtime host's checksum; a second run
# prints the cached directory at once.
#
# Usage: scripts/base-image.sh [RUNTIME_BIN]   (prints the layout directory)
source "$(dirname "$0")/lib.sh"

runtime_bin="${1:-$ROOT/target/debug/kubeless-runtime}"
[ -x "$runtime_bin" ] || die "$runtime_bin is missing: run cargo build --workspace --bins first"
python="/usr/bin/python3"
[ -x "$python" ] || die "Debian's python3 is required (apt-get install python3)"
need ldd "install libc-bin"
need tar "install tar"
need gzip "install gzip"
need sha256sum "install coreutils"

py_real="$(readlink -f "$python")"
py_ver="$("$py_real" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
stdlib="/usr/lib/python$py_ver"
[ -d "$stdlib" ] || die "$stdlib is missing"
runtime_sum="$(sha256sum "$runtime_bin" | cut -c1-16)"
key="python$py_ver-$runtime_sum-v1"
out="$CACHE/base-images/$key"
if [ -f "$out/index.json" ]; then
  echo "$out"
  exit 0
fi

work="$(mktemp -d "$CACHE/base-image.XXXXXX")"
trap 'rm -rf "$work"' EXIT
rootfs="$work/rootfs"
mkdir -p "$rootfs"/{usr/bin,usr/local/bin,tmp,kubeless,etc,proc,dev}

# copy_libs FILE...: every library ldd names for the files.
copy_libs() {
  local f lib
  for f in "$@"; do
    for lib in $(ldd "$f" 2>/dev/null | awk '/=>/ {print $3} /^\t\// {print $1}'); do
      if [ -e "$lib" ] && [ ! -e "$rootfs$lib" ]; then
        cp -L --parents "$lib" "$rootfs"
      fi
    done
  done
}

# copy_with_libs FILE...: the files at their paths, and their libraries.
copy_with_libs() {
  local f
  for f in "$@"; do
    cp -L --parents "$f" "$rootfs"
  done
  copy_libs "$@"
}

say "assembling the python$py_ver base image root"
copy_with_libs "$py_real"
ln -s "$(basename "$py_real")" "$rootfs/usr/bin/python3"
# The standard library without what a function never imports at run time.
tar -C / -cf - \
  --exclude="python$py_ver/test" --exclude="python$py_ver/idlelib" \
  --exclude="python$py_ver/tkinter" --exclude="python$py_ver/ensurepip" \
  --exclude="python$py_ver/lib2to3" --exclude="python$py_ver/turtledemo" \
  --exclude="python$py_ver/config-*" --exclude='*/__pycache__' \
  --exclude="python$py_ver/dist-packages" \
  "${stdlib#/}" | tar -C "$rootfs" -xf -
for so in "$stdlib"/lib-dynload/*.so; do
  copy_with_libs "$so"
done
# The runtime host and its libraries.
copy_libs "$runtime_bin"
cp "$runtime_bin" "$rootfs/usr/local/bin/kubeless-runtime"
chmod 0755 "$rootfs/usr/local/bin/kubeless-runtime"
printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n' >"$rootfs/etc/passwd"
printf 'root:x:0:\nnogroup:x:65534:\n' >"$rootfs/etc/group"
chmod 1777 "$rootfs/tmp"

say "writing the OCI layout"
layout="$work/layout"
mkdir -p "$layout/blobs/sha256"
tar -C "$rootfs" --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner \
  -cf "$work/layer.tar" .
diff_id="$(sha256sum "$work/layer.tar" | cut -d' ' -f1)"
gzip -n -6 "$work/layer.tar"
layer_sum="$(sha256sum "$work/layer.tar.gz" | cut -d' ' -f1)"
layer_size="$(stat -c %s "$work/layer.tar.gz")"
mv "$work/layer.tar.gz" "$layout/blobs/sha256/$layer_sum"

arch="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
printf '{"architecture":"%s","os":"linux","created":"1970-01-01T00:00:00Z","config":{"Env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","LANG=C.UTF-8","KUBELESS_PYTHON=/usr/bin/python3"],"Entrypoint":["/usr/local/bin/kubeless-runtime"],"WorkingDir":"/kubeless","Labels":{"io.kubeless.base":"python%s"}},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]},"history":[{"created":"1970-01-01T00:00:00Z","created_by":"scripts/base-image.sh python%s"}]}' \
  "$arch" "$py_ver" "$diff_id" "$py_ver" >"$work/config.json"
config_sum="$(sha256sum "$work/config.json" | cut -d' ' -f1)"
config_size="$(stat -c %s "$work/config.json")"
mv "$work/config.json" "$layout/blobs/sha256/$config_sum"

printf '{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:%s","size":%s},"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"sha256:%s","size":%s}]}' \
  "$config_sum" "$config_size" "$layer_sum" "$layer_size" >"$work/manifest.json"
manifest_sum="$(sha256sum "$work/manifest.json" | cut -d' ' -f1)"
manifest_size="$(stat -c %s "$work/manifest.json")"
mv "$work/manifest.json" "$layout/blobs/sha256/$manifest_sum"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
printf '{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:%s","size":%s,"annotations":{"org.opencontainers.image.ref.name":"latest"}}]}' \
  "$manifest_sum" "$manifest_size" >"$layout/index.json"

mkdir -p "$CACHE/base-images"
# Two concurrent runs build the same thing: the first rename wins.
if ! mv -T "$layout" "$out" 2>/dev/null; then
  [ -f "$out/index.json" ] || die "could not write $out"
fi
say "base image: $out ($(du -sh "$out" | cut -f1))"
echo "$out"
