# Builds the peers the benchmark compares against, cached outside the
# repository and keyed by what goes into them, so a second run is instant.
# Source it (after scripts/lib.sh); it defines:
#   kubeless_python  -> prints the python of a venv with Kubeless' runtime deps
#   watchdog_bin     -> prints the path of the built of-watchdog pattern

BENCH_PEERS="$ROOT/bench/peers"

key_of() { cat "$@" | sha256sum | cut -c1-12; }

kubeless_python() {
  local req="$BENCH_PEERS/requirements-kubeless.txt"
  local py; py="$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  local dir="$CACHE/bench/kubeless-python-py$py-$(key_of "$req")"
  if [ ! -x "$dir/bin/python" ] || [ ! -f "$dir/.complete" ]; then
    say "preparing the Kubeless Python runtime pattern (venv in $dir)"
    rm -rf "$dir"
    python3 -m venv "$dir" >&2 || die "python3 -m venv failed (apt-get install python3-venv)"
    "$dir/bin/pip" install --quiet --disable-pip-version-check -r "$req" >&2 \
      || die "pip could not install $req"
    touch "$dir/.complete"
  fi
  echo "$dir/bin/python"
}

watchdog_bin() {
  need go "install Go (https://go.dev/dl/) to build the of-watchdog pattern"
  local src="$BENCH_PEERS/watchdog"
  local dir="$CACHE/bench/watchdog-$(go env GOVERSION)-$(key_of "$src/main.go" "$src/go.mod")"
  if [ ! -x "$dir/watchdog" ]; then
    say "building the of-watchdog pattern ($dir)"
    mkdir -p "$dir"
    (cd "$src" && GOFLAGS=-mod=mod GOTOOLCHAIN=local go build -o "$dir/watchdog.tmp" .) >&2 \
      || die "go build of bench/peers/watchdog failed"
    mv "$dir/watchdog.tmp" "$dir/watchdog"
  fi
  echo "$dir/watchdog"
}
