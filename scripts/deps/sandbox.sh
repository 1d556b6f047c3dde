#!/usr/bin/env bash
# bubblewrap: lets a function read its secrets at /NAME/<key>, as on Kubernetes.
source "$(dirname "$0")/../lib.sh"
command -v bwrap >/dev/null 2>&1 || apt_install bubblewrap
