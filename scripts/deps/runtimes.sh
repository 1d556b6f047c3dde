#!/usr/bin/env bash
# Language toolchains for the Ruby, PHP, Go and Java runtimes.
# Ruby and PHP (with bundler and composer for Gemfile/composer.json
# dependencies) come from Debian; Go, Java and Maven are expected to be
# preinstalled and are only checked. A second run only checks.
source "$(dirname "$0")/../lib.sh"

if ! command -v ruby >/dev/null || ! command -v bundle >/dev/null \
  || ! command -v php >/dev/null || ! command -v composer >/dev/null; then
  apt_install ruby ruby-bundler php-cli composer
fi

need go "install Go 1.21 or newer (https://go.dev/dl/) for the go runtimes"
need java "install a JDK 17 or newer (apt-get install openjdk-17-jdk-headless) for the java runtimes"
need javac "install a JDK 17 or newer (apt-get install openjdk-17-jdk-headless) for the java runtimes"
need mvn "install Maven (apt-get install maven) for pom.xml dependencies of java functions"

java_major="$(javac -version 2>&1 | sed -n 's/^javac \([0-9]*\).*/\1/p')"
[ "${java_major:-0}" -ge 17 ] || die "the java runtimes need JDK 17 or newer (found javac ${java_major:-unknown})"
