#!/usr/bin/env bash
# One command for the whole benchmark: installs wrk and the peers, builds the
# release binaries, runs bench/bench.py and prints the table it writes to
# bench/results/latest.md (and latest.json).
#
# Usage: bench/run.sh [--quick | --smoke] [--bin-dir DIR] [--duration SECONDS]
#                     [--functions N] [--out DIR]
#   (default)  5 s per point, concurrency 1/16/64, 500 functions (~8-10 min on 2 cores)
#   --quick    2 s per point, 50 functions
#   --smoke    1 s per point, concurrency 1/16, 5 functions: checks the
#              harness end to end, not the numbers (CI runs this)
#   --bin-dir  use kubeless and kubeless-runtime from DIR instead of building
source "$(dirname "$0")/../scripts/lib.sh"

mode=default
bin_dir=""
extra=()
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --smoke) mode=smoke ;;
    --bin-dir) bin_dir="${2:?--bin-dir needs a directory}"; shift ;;
    --duration | --functions | --out | --deploy-clients)
      extra+=("$1" "${2:?$1 needs a value}"); shift ;;
    -h | --help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) die "unknown argument $1 (see bench/run.sh --help)" ;;
  esac
  shift
done

need python3 "install Python 3"
need node "install Node.js 18 or newer"
bash "$ROOT/scripts/deps/bench.sh"
need wrk "scripts/deps/bench.sh installs it (apt-get install wrk)"
source "$ROOT/bench/peers/prepare.sh"
kubeless_py="$(kubeless_python)"
watchdog="$(watchdog_bin)"

if [ -z "$bin_dir" ]; then
  say "building kubeless (release)"
  (cd "$ROOT" && cargo build --release --workspace --bins)
  bin_dir="$ROOT/target/release"
fi
for b in kubeless kubeless-runtime; do
  [ -x "$bin_dir/$b" ] || die "$bin_dir/$b is missing"
done

say "benchmark ($mode)"
exec python3 "$ROOT/bench/bench.py" --mode "$mode" --bin-dir "$bin_dir" \
  --kubeless-python "$kubeless_py" --watchdog "$watchdog" "${extra[@]}"
