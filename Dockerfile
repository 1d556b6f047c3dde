# The project image, ghcr.io/kubeless-rs/kubeless:<version> (the workspace
# version): `kubeless controller-manager`, the code `prepare` init container
# (sh, base64, sha256sum, curl, unzip, tar with gzip/bzip2/xz), CronJobs (`kubeless
# cron-invoke`) and the build Job (`kubeless build-image`).
#
#   docker build -t ghcr.io/kubeless-rs/kubeless:0.1.0 .
#
# The builder's Rust is the one rust-toolchain.toml pins (a test checks).
FROM rust:1.95.0-trixie AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p kubeless-cli

FROM debian:trixie-slim
# sh, base64, sha256sum, tar and gzip come with the base; curl downloads
# `url` functions, unzip unpacks zip ones, bzip2 and xz-utils let tar
# unpack `.tar.bz2`/`.tar.xz` (compressedtar) ones.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates curl unzip bzip2 xz-utils \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/kubeless /usr/local/bin/kubeless
USER 1000
ENTRYPOINT ["/usr/local/bin/kubeless"]
