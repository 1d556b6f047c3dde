# The project image, ghcr.io/kubeless-rs/kubeless:<version> (the workspace
# version): `kubeless controller-manager`, the code `prepare` init container
# (sh, base64, sha256sum, curl, unzip, tar with gzip/bzip2/xz), CronJobs (`kubeless
# cron-invoke`) and the build Job (`kubeless build-image`).
#
#   docker build -t ghcr.io/kubeless-rs/kubeless:0.1.0 .
#
# What the image holds is listed in deploy/images/base.packages and
# deploy/images/kubeless.packages, read here and by scripts/k8s-images.sh,
# which assembles the same image from a Debian machine's files without a
# daemon. The builder's Rust is the one rust-toolchain.toml pins (a test
# checks), on the same Debian release as the image (the binary links
# against its glibc).
FROM rust:1.95.0-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kubeless-cli

FROM debian:bookworm-slim
COPY deploy/images/base.packages deploy/images/kubeless.packages /tmp/packages/
# Package names from the lists; lines starting with / name what the
# packages' installation makes, which apt-get does here. User 1000, the
# one the image runs as, has /tmp as its home.
RUN apt-get update \
 && apt-get install -y --no-install-recommends $(sed -e 's/#.*//' -e '/^\//d' /tmp/packages/*) \
 && rm -rf /var/lib/apt/lists/* /tmp/packages \
 && useradd --uid 1000 --user-group --home-dir /tmp --no-create-home kubeless
COPY --from=build /src/target/release/kubeless /usr/local/bin/kubeless
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
USER 1000
ENTRYPOINT ["/usr/local/bin/kubeless"]
