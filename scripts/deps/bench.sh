#!/usr/bin/env bash
# The benchmark's load generator (wrk, from Debian) and the peers it is
# compared against (a venv with Kubeless' Python runtime deps, the of-watchdog
# pattern built with Go). Cached; a second run only checks.
source "$(dirname "$0")/../lib.sh"
command -v wrk >/dev/null 2>&1 || apt_install wrk
source "$ROOT/bench/peers/prepare.sh"
kubeless_python >/dev/null
watchdog_bin >/dev/null
