#!/usr/bin/env bash
# Kafka-protocol broker for the Kafka trigger tests: tansu, built once and
# cached outside the repository, keyed by version. A second run is instant.
source "$(dirname "$0")/../lib.sh"

TANSU_VERSION="0.6.0"
TANSU_ROOT="$CACHE/tansu-$TANSU_VERSION"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

if [ -x "$TANSU_BIN" ]; then
  exit 0
fi

need cargo "install Rust from https://rustup.rs"
# tansu's build needs a C toolchain, protoc is vendored by its crates.
apt_install build-essential pkg-config
say "building tansu $TANSU_VERSION (once; cached in $TANSU_ROOT)"
CARGO_TARGET_DIR="$CACHE/tansu-build-$TANSU_VERSION" \
  cargo install tansu --version "$TANSU_VERSION" --locked \
  --features dynostore,libsql --root "$TANSU_ROOT"
rm -rf "$CACHE/tansu-build-$TANSU_VERSION"
[ -x "$TANSU_BIN" ] || die "tansu did not install to $TANSU_BIN"
