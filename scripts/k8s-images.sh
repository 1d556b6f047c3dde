#!/usr/bin/env bash
# Build the project's container images from this machine's files, without
# a container daemon, and push them to a registry: the images the
# controller's rendered pods name, for a test cluster whose containerd
# pulls ghcr.io/kubeless-rs/X:T from REGISTRY/kubeless-rs/X:T.
#
#   kubeless-rs/kubeless:<workspace version>   as the root Dockerfile builds it
#   kubeless-rs/runtime-<language>:<version>   as runtimes/<language>/Dockerfile
#   pause:3.10-local                           the pod sandbox (kubelet's pause)
#
# What goes into an image is listed once, in deploy/images/base.packages
# and deploy/images/<image>.packages, which the Dockerfile installs with
# apt-get on debian:bookworm-slim. Here each listed Debian package, and
# every package it depends on (Depends and Pre-Depends, transitively, the
# first installed alternative) that is installed on this machine, is
# copied as `dpkg -L` lists it, without documentation (copyright files
# stay), man pages and translations. Lines naming paths (what the
# packages' installation scripts make, such as /etc/ssl/certs) are copied
# as they are here, and so are the update-alternatives links
# (/usr/bin/java) whose targets are in the image. Left out: dpkg, debconf
# and the other tools of package installation (SKIP below), which the
# Debian base image carries but nothing in these images runs. Python
# modules are byte-compiled as Debian's installation does (hash-based, so
# the layer's zero time stamps do not invalidate them). The image's ENV,
# WORKDIR, USER and ENTRYPOINT are read from the Dockerfile's final stage,
# its binaries are this build's (KUBELESS_BIN_DIR, stripped of debug
# info), and `kubeless push-rootfs` makes the one deterministic layer,
# config and manifest, and pushes them.
#
# Cached: each image carries a build key (label io.kubeless.build-key), a
# digest of everything it is made from: this script, its lists and
# Dockerfile, the installed version of each of its packages, the
# installation-made paths and alternatives, its binaries. An image whose
# key the registry already has is neither assembled nor pushed, so a
# second run with nothing changed takes seconds.
#
# Usage: scripts/k8s-images.sh [--every-version] REGISTRY [IMAGE...]
#   --every-version  also tag each runtime image under every other version
#             of its language that deploy/kubeless.yaml names (python 3.6 to
#             3.13, nodejs 10 to 22, ...): the image runs them all on this
#             machine's toolchain, as embedded mode does, so that Kubeless
#             manifests naming older versions run unchanged on a test
#             cluster. Plain-HTTP (loopback) registries only.
#   REGISTRY  HOST:PORT; plain HTTP on loopback (127.0.0.1:5055), else HTTPS
#             with ~/.docker/config.json credentials
#   IMAGE     kubeless, runtime-<language> or pause; default: all of them
# Environment: KUBELESS_BIN_DIR holds kubeless and kubeless-runtime
# (default target/debug).
source "$(dirname "$0")/lib.sh"

SCRIPT="$ROOT/scripts/k8s-images.sh"
LISTS="$ROOT/deploy/images"
ALL_IMAGES=(kubeless runtime-python runtime-nodejs runtime-ruby runtime-php runtime-go runtime-java pause)
# Packages that only serve package installation: their dependents list
# them for maintainer scripts, which never run in these images.
SKIP=" dpkg debconf debconf-2.0 perl-base debianutils install-info ucf sensible-utils init-system-helpers lsb-base adduser passwd "
# Documentation and translations, as debian:*-slim leaves them out.
EXCLUDE='^/usr/share/(man|info|locale|lintian|linda|bug|doc-base|gtk-doc|help|bash-completion|zsh|fish|menu)(/|$)'

every_version=""
if [ "${1:-}" = --every-version ]; then
  every_version=1
  shift
fi
[ $# -ge 1 ] && [ -n "$1" ] || die "usage: scripts/k8s-images.sh [--every-version] REGISTRY [IMAGE...]"
registry="$1"
shift
images=("$@")
[ ${#images[@]} -gt 0 ] || images=("${ALL_IMAGES[@]}")
for image in "${images[@]}"; do
  [[ " ${ALL_IMAGES[*]} " == *" $image "* ]] || die "unknown image $image (one of: ${ALL_IMAGES[*]})"
done

bin_dir="${KUBELESS_BIN_DIR:-$ROOT/target/debug}"
kubeless="$bin_dir/kubeless"
runtime_bin="$bin_dir/kubeless-runtime"
for b in "$kubeless" "$runtime_bin"; do
  [ -x "$b" ] || die "$b is missing: run cargo build --workspace --bins first"
done
need dpkg-query "this script copies Debian packages: run it on Debian"
need objcopy "apt-get install binutils"
need ldd "apt-get install libc-bin"
need tar "apt-get install tar"
case "$registry" in
  127.* | localhost | localhost:* | "[::1]"*) insecure=(--insecure) ;;
  *) insecure=() ;;
esac
[ -z "$every_version" ] || [ ${#insecure[@]} -gt 0 ] \
  || die "--every-version tags images on a plain-HTTP loopback registry only"
workspace_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")"
[ -n "$workspace_version" ] || die "no [workspace.package] version in Cargo.toml"

work="$(mktemp -d "$CACHE/k8s-images.XXXXXX")"
trap 'rm -rf "$work"' EXIT
started=$SECONDS

# --- the dpkg database ---------------------------------------------------

declare -A PKG_VERSION PKG_DEPS PROVIDER
load_dpkg() {
  local name status version provides predeps deps p sep=$'\x1f'
  # Fields end with a separator that is not white space, so empty ones
  # are kept.
  while IFS="$sep" read -r name status version provides predeps deps; do
    [[ $status == ii* ]] || continue
    PKG_VERSION[$name]="$version"
    PKG_DEPS[$name]="$predeps,$deps"
    IFS=',' read -ra provs <<<"$provides"
    for p in "${provs[@]}"; do
      p="${p%%(*}"
      p="${p// /}"
      if [ -n "$p" ] && [ -z "${PROVIDER[$p]:-}" ]; then
        PROVIDER[$p]="$name"
      fi
    done
  done < <(dpkg-query -W -f "\${Package}$sep\${db:Status-Abbrev}$sep\${Version}$sep\${Provides}$sep\${Pre-Depends}$sep\${Depends}$sep\n")
}

# resolve "a (>= 1) | b:any": the first alternative installed (a package or
# a virtual one's provider), in RESOLVED; empty when none is.
resolve() {
  local alt name
  RESOLVED=""
  IFS='|' read -ra alts <<<"$1"
  for alt in "${alts[@]}"; do
    name="${alt%%(*}"
    name="${name// /}"
    name="${name%%:*}"
    [ -n "$name" ] || continue
    if [ -n "${PKG_VERSION[$name]:-}" ]; then
      RESOLVED="$name"
      return
    elif [ -n "${PROVIDER[$name]:-}" ]; then
      RESOLVED="${PROVIDER[$name]}"
      return
    fi
  done
}

# closure PKG...: the packages and what they depend on, in CLOSURE (sorted).
closure() {
  local -A seen=()
  local queue=("$@") p group
  while [ ${#queue[@]} -gt 0 ]; do
    p="${queue[0]}"
    queue=("${queue[@]:1}")
    [ -z "${seen[$p]:-}" ] || continue
    seen[$p]=1
    IFS=',' read -ra groups <<<"${PKG_DEPS[$p]}"
    for group in "${groups[@]}"; do
      [[ $group == *[a-z0-9]* ]] || continue
      resolve "$group"
      [ -n "$RESOLVED" ] || die "$p depends on ${group# }, which is not installed"
      [[ $SKIP == *" $RESOLVED "* ]] || queue+=("$RESOLVED")
    done
  done
  mapfile -t CLOSURE < <(printf '%s\n' "${!seen[@]}" | sort)
}

# read_lists NAME...: packages and paths of deploy/images/NAME.packages, in
# PACKAGES and PATHS.
read_lists() {
  local name line
  PACKAGES=()
  PATHS=()
  for name in "$@"; do
    while read -r line; do
      line="${line%%#*}"
      line="${line%"${line##*[![:space:]]}"}"
      case "$line" in
        "") ;;
        /*) PATHS+=("$line") ;;
        *)
          [ -n "${PKG_VERSION[$line]:-}" ] \
            || die "$name.packages: $line is not installed here (apt-get install $line)"
          PACKAGES+=("$line")
          ;;
      esac
    done <"$LISTS/$name.packages"
  done
}

# --- the Dockerfile ----------------------------------------------------------

# dockerfile_config FILE: push-rootfs flags from the final stage's ENV,
# WORKDIR, USER and ENTRYPOINT, in CONFIG_ARGS.
dockerfile_config() {
  local file="$1" keyword rest word words
  CONFIG_ARGS=()
  while read -r keyword rest; do
    case "${keyword^^}" in
      ENV)
        read -ra words <<<"$rest"
        for word in "${words[@]}"; do
          [[ $word == *=* && $word != *'$'* && $word != *'"'* ]] \
            || die "$file: ENV $word: write NAME=VALUE pairs without quotes or variables"
          CONFIG_ARGS+=(--env "$word")
        done
        ;;
      WORKDIR) CONFIG_ARGS+=(--workdir "$rest") ;;
      USER) CONFIG_ARGS+=(--user "$rest") ;;
      ENTRYPOINT)
        [[ $rest =~ ^\[(\ *\"[^\",]*\"\ *,?)*\]$ ]] \
          || die "$file: ENTRYPOINT $rest: write a JSON array of plain strings"
        rest="${rest#[}"
        rest="${rest%]}"
        IFS=',' read -ra words <<<"$rest"
        for word in "${words[@]}"; do
          word="${word#*\"}"
          CONFIG_ARGS+=(--entrypoint "${word%\"*}")
        done
        ;;
    esac
  done < <(awk '
    /^[[:space:]]*#/ { next }
    { line = cont ? line " " $0 : $0 }
    /\\[[:space:]]*$/ { sub(/\\[[:space:]]*$/, "", line); cont = 1; next }
    { cont = 0 }
    line ~ /^[[:space:]]*$/ { next }
    { n++; ins[n] = line; if (toupper(line) ~ /^[[:space:]]*FROM[[:space:]]/) last = n }
    END { for (i = last + 1; i <= n; i++) print ins[i] }' "$file")
}

# dockerfile_version FILE: the default of `ARG VERSION=`.
dockerfile_version() {
  sed -n 's/^ARG VERSION=//p' "$1" | head -n1
}

# toolchain_version LANGUAGE: the version this machine's toolchain has, as
# the runtime catalogue writes it (3.11, 20, 1.26, 17).
toolchain_version() {
  case "$1" in
    python) /usr/bin/python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' ;;
    nodejs) /usr/bin/node -p 'process.versions.node.split(".")[0]' ;;
    ruby) /usr/bin/ruby -e 'puts RbConfig::CONFIG.values_at("MAJOR", "MINOR").join(".")' ;;
    php) /usr/bin/php -r 'echo PHP_MAJOR_VERSION, ".", PHP_MINOR_VERSION, "\n";' ;;
    go) GOTOOLCHAIN=local /usr/local/go/bin/go env GOVERSION | sed -E 's/^go([0-9]+\.[0-9]+).*/\1/' ;;
    java) /usr/bin/java -XshowSettings:properties -version 2>&1 | awk '$1 == "java.specification.version" { print $3 }' ;;
    *) die "no toolchain version for $1" ;;
  esac
}

# --- assembling a root filesystem ------------------------------------------

# package_paths PKG...: what dpkg installed for the packages that exists,
# relative to /, with /bin, /lib, ... written as /usr/... (the merged /usr
# of Debian 12: those are links in the image too), without documentation.
package_paths() {
  local merged=""
  [ "$(readlink /bin)" = usr/bin ] && merged='s@^/(bin|sbin|lib|lib32|lib64|libx32)(/|$)@/usr/\1\2@'
  dpkg-query -L "$@" \
    | grep '^/' \
    | sed -E "$merged" \
    | grep -Ev "$EXCLUDE" \
    | awk '!(/^\/usr\/share\/doc\// && !/\/copyright$/) && $0 != "/."' \
    | sort -u \
    | while IFS= read -r p; do
      if [ -e "$p" ] || [ -L "$p" ]; then
        printf '%s\n' "${p#/}"
      else
        printf '%s\n' "$p" >>"$work/missing"
      fi
    done
}

# check_missing ROOTFS: paths dpkg lists that are not here, outside the
# path lines (which take what is here instead): a package changed after
# its installation, which the image may miss.
check_missing() {
  local rootfs="$1" p state missing=()
  [ -f "$work/missing" ] || return 0
  while IFS= read -r p; do
    for state in "${PATHS[@]}"; do
      [[ $p == "$state" || $p == "$state"/* ]] && continue 2
    done
    [ -e "$rootfs$p" ] || [ -L "$rootfs$p" ] || missing+=("$p")
  done <"$work/missing"
  rm -f "$work/missing"
  if [ ${#missing[@]} -gt 0 ]; then
    say "  warning: ${#missing[@]} paths dpkg lists are missing here, e.g. ${missing[0]}"
  fi
}

# copy_state ROOTFS PATH: a file or directory tree as it is here.
copy_state() {
  local rootfs="$1" path="$2"
  [ -e "$path" ] || die "$path is missing here (made when its package is installed)"
  tar -C / -cf - "${path#/}" | tar -C "$rootfs" -xf -
}

# copy_alternatives ROOTFS: the update-alternatives links of /usr/bin and
# /usr/sbin whose targets are in the image (java, javac, mvn, php, ...).
copy_alternatives() {
  local rootfs="$1" link alt target
  while IFS=$'\t' read -r link alt; do
    target="$(readlink -f "$link")" || continue
    [ -e "$rootfs$target" ] || continue
    [ -e "$rootfs$link" ] || [ -L "$rootfs$link" ] && continue
    mkdir -p "$rootfs/etc/alternatives"
    cp -P "$link" "$rootfs$link"
    [ -L "$rootfs$alt" ] || cp -P "$alt" "$rootfs$alt"
  done < <(find /usr/bin /usr/sbin -maxdepth 1 -lname '/etc/alternatives/*' -printf '%p\t%l\n' | sort)
}

# alternatives_state: what copy_alternatives reads, for build keys.
alternatives_state() {
  find /usr/bin /usr/sbin /etc/alternatives -maxdepth 1 -type l -printf '%p %l\n' | sort
}

# copy_libs ROOTFS FILE...: the shared libraries the files load that the
# image lacks (the binaries built here; packages bring their own).
copy_libs() {
  local rootfs="$1" f lib
  shift
  for f in "$@"; do
    for lib in $(ldd "$f" 2>/dev/null | awk '/=>/ { print $3 } /^\t\// { print $1 }'); do
      if [ -e "$lib" ] && [ ! -e "$rootfs$lib" ]; then
        say "  $(basename "$f") loads $lib, which no listed package holds: copied"
        cp -L --parents "$lib" "$rootfs"
      fi
    done
  done
}

# base_rootfs ROOTFS: the directories and files every image has.
base_rootfs() {
  local rootfs="$1" d
  mkdir -p "$rootfs"/{etc,usr/local/bin,tmp,proc,dev,sys,kubeless}
  if [ "$(readlink /bin)" = usr/bin ]; then
    for d in bin sbin lib lib64; do
      mkdir -p "$rootfs/usr/$d"
      ln -s "usr/$d" "$rootfs/$d"
    done
  fi
  chmod 1777 "$rootfs/tmp"
  # root, nobody and the user the images run as (uid 1000, its home /tmp
  # like HOME), as the Dockerfiles' useradd writes it.
  printf '%s\n' 'root:x:0:0:root:/root:/bin/sh' \
    'nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin' \
    'kubeless:x:1000:1000::/tmp:/bin/sh' >"$rootfs/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nogroup:x:65534:' 'kubeless:x:1000:' >"$rootfs/etc/group"
  # Without it glibc asks DNS before /etc/hosts.
  printf '%s\n' 'passwd: files' 'group: files' 'shadow: files' 'hosts: files dns' \
    'networks: files' 'protocols: files' 'services: files' 'ethers: files' 'rpc: files' \
    >"$rootfs/etc/nsswitch.conf"
}

# php_postinst ROOTFS: what the PHP packages' installation does: each
# SAPI's php.ini from php.ini-production (ucf), and every extension the
# image has enabled (phpenmod: its ini in mods-available, linked from each
# SAPI's conf.d with the ini's priority). Done from the image's own files,
# so extensions installed here but not listed stay out.
php_postinst() {
  local rootfs="$1" ini mod prio ver sapi dir
  for dir in "$rootfs"/usr/lib/php/[0-9]*; do
    [ -d "$dir" ] || continue
    ver="$(basename "$dir")"
    for sapi in "$rootfs/etc/php/$ver"/*/; do
      sapi="$(basename "$sapi")"
      [ "$sapi" != mods-available ] || continue
      if [ -f "$dir/php.ini-production.$sapi" ]; then
        cp "$dir/php.ini-production.$sapi" "$rootfs/etc/php/$ver/$sapi/php.ini"
      elif [ -f "$dir/php.ini-production" ]; then
        cp "$dir/php.ini-production" "$rootfs/etc/php/$ver/$sapi/php.ini"
      fi
    done
  done
  for ini in "$rootfs"/usr/share/php[0-9]*-*/*/*.ini; do
    [ -f "$ini" ] || continue
    ver="${ini#"$rootfs"/usr/share/php}"
    ver="${ver%%-*}"
    mod="$(basename "$ini" .ini)"
    prio="$(sed -n 's/^; *priority=\([0-9]*\).*/\1/p' "$ini" | head -n1)"
    mkdir -p "$rootfs/etc/php/$ver/mods-available"
    cp "$ini" "$rootfs/etc/php/$ver/mods-available/$mod.ini"
    for sapi in "$rootfs/etc/php/$ver"/*/; do
      [ "$(basename "$sapi")" != mods-available ] || continue
      mkdir -p "$sapi/conf.d"
      ln -sfn "/etc/php/$ver/mods-available/$mod.ini" "$sapi/conf.d/${prio:-20}-$mod.ini"
    done
  done
}

# compile_python ROOTFS: byte-compile the image's Python modules, as
# Debian's installation does (py3compile); hash-based .pyc files stay valid
# with the layer's zero time stamps.
compile_python() {
  local rootfs="$1" dir python
  for dir in "$rootfs"/usr/lib/python3 "$rootfs"/usr/lib/python3.*; do
    [ -d "$dir" ] || continue
    python="$(ls "$rootfs"/usr/bin/python3.[0-9]* 2>/dev/null | grep -E '/python3\.[0-9]+$' | head -n1)"
    [ -n "$python" ] || return 0
    "/usr/bin/$(basename "$python")" -m compileall -q -j 2 --invalidation-mode unchecked-hash \
      -d "${dir#"$rootfs"}" -x '/(test|tests|lib2to3/tests)/' "$dir" >/dev/null \
      || say "  some Python files did not compile (they fail in Debian too)"
  done
}

# add_binary ROOTFS SRC DEST: a binary of this build, without debug info.
add_binary() {
  objcopy --strip-debug "$2" "$1$3"
  chmod 0755 "$1$3"
  copy_libs "$1" "$1$3"
}

# --- images ------------------------------------------------------------------

# describe IMAGE: REF, DOCKERFILE, LIST_NAMES, KEY_EXTRA for an image.
describe() {
  local image="$1" language version built
  KEY_EXTRA=""
  case "$image" in
    kubeless)
      REF="$registry/kubeless-rs/kubeless:$workspace_version"
      DOCKERFILE="$ROOT/Dockerfile"
      LIST_NAMES=(base kubeless)
      KEY_EXTRA="kubeless $(sha256sum <"$kubeless")"
      ;;
    runtime-*)
      language="${image#runtime-}"
      DOCKERFILE="$ROOT/runtimes/$language/Dockerfile"
      LIST_NAMES=(base "$image")
      version="$(toolchain_version "$language")"
      built="$(dockerfile_version "$DOCKERFILE")"
      [ "$version" = "$built" ] \
        || die "runtimes/$language/Dockerfile builds VERSION=$built, but this machine's $language is $version: the image would not be the Dockerfile's"
      REF="$registry/kubeless-rs/runtime-$language:$version"
      KEY_EXTRA="kubeless-runtime $runtime_sum"
      if [ "$language" = go ]; then
        KEY_EXTRA+=" go $(head -n1 /usr/local/go/VERSION) $(sha256sum <"$LISTS/runtime-go.trim")"
      fi
      ;;
  esac
}

# build_key IMAGE: the digest of what the image is made from.
build_key() {
  {
    echo "k8s-images/1 $1"
    cat "$SCRIPT" "$DOCKERFILE"
    for name in "${LIST_NAMES[@]}"; do cat "$LISTS/$name.packages"; done
    for p in "${CLOSURE[@]}"; do echo "$p ${PKG_VERSION[$p]}"; done
    for p in "${PATHS[@]}"; do find "$p" -printf '%p %l %s %T@\n' | sort; done
    alternatives_state
    echo "$KEY_EXTRA"
  } | sha256sum | cut -d' ' -f1
}

# up_to_date REF KEY: whether the registry holds the image with this key.
up_to_date() {
  local state
  state="$("$kubeless" push-rootfs --check --image "$1" --build-key "$2" "${insecure[@]}")" \
    || die "cannot read $1 from the registry"
  [ "$state" = up-to-date ]
}

# push ROOTFS REF KEY FLAGS...: push and report the sizes.
push() {
  local rootfs="$1" ref="$2" key="$3" unpacked
  shift 3
  unpacked="$(du -sb "$rootfs" | cut -f1)"
  "$kubeless" push-rootfs --rootfs "$rootfs" --image "$ref" --build-key "$key" \
    "${insecure[@]}" "$@" >/dev/null
  say "  $ref: $((unpacked / 1048576)) MiB unpacked"
}

build_debian_image() {
  local image="$1" rootfs="$work/$1" key t0=$SECONDS
  describe "$image"
  read_lists "${LIST_NAMES[@]}"
  closure "${PACKAGES[@]}"
  key="$(build_key "$image")"
  if up_to_date "$REF" "$key"; then
    say "$REF is up to date"
    return
  fi
  dockerfile_config "$DOCKERFILE"
  say "assembling $REF (${#CLOSURE[@]} packages)"
  base_rootfs "$rootfs"
  package_paths "${CLOSURE[@]}" >"$work/paths"
  tar -C / --no-recursion -T "$work/paths" -cf - | tar -C "$rootfs" -xf -
  for p in "${PATHS[@]}"; do copy_state "$rootfs" "$p"; done
  check_missing "$rootfs"
  copy_alternatives "$rootfs"
  php_postinst "$rootfs"
  if [ "$image" = runtime-go ]; then
    copy_go "$rootfs"
  fi
  compile_python "$rootfs"
  case "$image" in
    kubeless) add_binary "$rootfs" "$kubeless" /usr/local/bin/kubeless ;;
    *) add_binary "$rootfs" "$runtime_bin" /usr/local/bin/kubeless-runtime ;;
  esac
  say "  assembled in $((SECONDS - t0)) s"
  push "$rootfs" "$REF" "$key" "${CONFIG_ARGS[@]}"
  rm -rf "$rootfs"
  say "  done in $((SECONDS - t0)) s"
}

# copy_go ROOTFS: this machine's /usr/local/go less runtime-go.trim.
copy_go() {
  local rootfs="$1" line trim=()
  [ -x /usr/local/go/bin/go ] || die "/usr/local/go is not a Go toolchain (https://go.dev/dl/)"
  while read -r line; do
    line="${line%%#*}"
    line="${line%"${line##*[![:space:]]}"}"
    case "$line" in
      "") ;;
      /*) trim+=(--anchored "--exclude=go$line") ;;
      *) trim+=(--no-anchored "--exclude=$line") ;;
    esac
  done <"$LISTS/runtime-go.trim"
  tar -C /usr/local "${trim[@]}" -cf - go | tar -C "$rootfs/usr/local" -xf -
}

# The pod sandbox: kubelet's pause, static, from the Kubernetes source the
# test harness builds (tools/k8s-harness/go.mod), in an image of its own.
build_pause() {
  local rootfs="$work/pause" k8s src key
  need gcc "apt-get install gcc libc6-dev"
  need go "install Go (https://go.dev/dl/)"
  k8s="$(awk '$1 == "k8s.io/kubernetes" { print $2; exit }' "$ROOT/tools/k8s-harness/go.mod")"
  [ -n "$k8s" ] || die "tools/k8s-harness/go.mod does not require k8s.io/kubernetes"
  src="$(GOTOOLCHAIN=local go env GOMODCACHE)/k8s.io/kubernetes@$k8s/build/pause/linux/pause.c"
  if [ ! -f "$src" ]; then
    say "downloading k8s.io/kubernetes $k8s (the pause source) into the Go module cache"
    (cd "$ROOT/tools/k8s-harness" && GOTOOLCHAIN=local go mod download k8s.io/kubernetes)
  fi
  REF="$registry/pause:3.10-local"
  key="$({
    echo "k8s-images/1 pause"
    sha256sum <"$src"
    gcc --version | head -n1
    echo "libc6-dev ${PKG_VERSION[libc6-dev]:-}"
    sed -n '/^build_pause()/,/^}/p' "$SCRIPT"
  } | sha256sum | cut -d' ' -f1)"
  if up_to_date "$REF" "$key"; then
    say "$REF is up to date"
    return
  fi
  say "building $REF"
  mkdir -p "$rootfs"
  gcc -Os -static -DVERSION=v3.10-local -o "$rootfs/pause" "$src"
  strip "$rootfs/pause"
  # As upstream's image: USER 65535:65535, ENTRYPOINT ["/pause"].
  push "$rootfs" "$REF" "$key" --entrypoint /pause --user 65535:65535
  rm -rf "$rootfs"
}

# tag_every_version REF: the manifest under REF also under every other tag
# deploy/kubeless.yaml names for its repository (--every-version).
tag_every_version() {
  local ref="$1" path repo tag accept="application/vnd.oci.image.manifest.v1+json" t
  path="${ref#"$registry"/}"
  repo="${path%:*}"
  tag="${path##*:}"
  curl -sf -H "Accept: $accept" -o "$work/manifest.json" "http://$registry/v2/$repo/manifests/$tag" \
    || die "cannot read $ref back from the registry"
  for t in $(grep -o "ghcr.io/$repo:[^\"' ]*" "$ROOT/deploy/kubeless.yaml" | sed 's/.*://' | sort -u); do
    [ "$t" = "$tag" ] && continue
    curl -sf -X PUT -H "Content-Type: $accept" --data-binary "@$work/manifest.json" \
      "http://$registry/v2/$repo/manifests/$t" >/dev/null || die "cannot tag $repo:$t"
  done
  say "  $ref also tagged as every version of deploy/kubeless.yaml"
}

load_dpkg
runtime_sum="$(sha256sum <"$runtime_bin" | cut -d' ' -f1)"
for image in "${images[@]}"; do
  case "$image" in
    pause) build_pause ;;
    *) build_debian_image "$image" ;;
  esac
  if [ -n "$every_version" ] && [[ $image == runtime-* ]]; then
    tag_every_version "$REF"
  fi
done
say "images on $registry ready in $((SECONDS - started)) s"
