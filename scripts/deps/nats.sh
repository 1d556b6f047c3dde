#!/usr/bin/env bash
# NATS server (with JetStream) for the NATS trigger tests, from Debian.
source "$(dirname "$0")/../lib.sh"
apt_install nats-server
