#!/usr/bin/env bash
# OCI registry for the image build tests: Debian's docker-registry
# (distribution 2.8), apache2-utils for bcrypt htpasswd files, and skopeo as
# an independent client that reads back what the builder pushed.
source "$(dirname "$0")/../lib.sh"
apt_install docker-registry apache2-utils skopeo
