# spotq images: a static (musl) binary on `scratch` with CA certificates, a health probe
# and a non-root user; the binary is PID 1 and handles SIGTERM itself.
#
#   docker build -t orders-worker .                                 # examples/basic-sqs-worker.rs
#   docker build --build-arg WORKER=advanced-batch-job -t job .     # another example
#   docker build --build-arg WORKER_PACKAGE=orders --build-arg WORKER_KIND=bin \
#     --build-arg WORKER=orders -t orders .                          # a [[bin]] target
#   docker build --target controller -t spotq-controller .
#
# Without a registry (CI, scripts/image): build the binaries on the host into dist/ and
# pass `--build-arg BINARIES=dist`; no base image is pulled then, and the runtime stages
# are the same.

# Where the binaries come from: `build` (compiled below, in the rust image) or `dist`
# (dist/ in the build context: worker, spotq-controller, spotq-healthcheck,
# ca-certificates.crt).
ARG BINARIES=build

FROM rust:1.95-slim-bookworm AS toolchain
# A fully static binary: the musl target, and musl-gcc for the C in aws-lc-sys. (Not
# pinned: the base image's Debian release fixes the versions, and a pinned point release
# leaves the mirror.)
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates musl-tools \
    && rm -rf /var/lib/apt/lists/* \
    && rustup target add x86_64-unknown-linux-musl
WORKDIR /src
COPY . .
ENV RUSTFLAGS="-C strip=symbols"

FROM toolchain AS build-worker
# The worker: an example of this workspace (`WORKER_KIND=example`) or a [[bin]] target
# (`WORKER_KIND=bin`) of the package WORKER_PACKAGE.
ARG WORKER=basic-sqs-worker
# The cargo features the worker needs: the examples on SQS need the examples' `sqs`
# (empty for a [[bin]] of a package of your own that needs none).
ARG WORKER_FEATURES=spotq-examples/sqs
ARG WORKER_KIND=example
ARG WORKER_PACKAGE=spotq-examples
RUN cargo build --release --target x86_64-unknown-linux-musl \
        -p "${WORKER_PACKAGE}" "--${WORKER_KIND}" "${WORKER}" --features "${WORKER_FEATURES}" \
        -p spotq-healthcheck --bin spotq-healthcheck \
    && mkdir /out \
    && release=target/x86_64-unknown-linux-musl/release \
    && if [ "${WORKER_KIND}" = example ]; then dir="$release/examples"; else dir="$release"; fi \
    && cp "$dir/${WORKER}" /out/worker \
    && cp "$release/spotq-healthcheck" /etc/ssl/certs/ca-certificates.crt /out/

FROM toolchain AS build-controller
RUN cargo build --release --target x86_64-unknown-linux-musl \
        -p spotq-controller --bin spotq-controller -p spotq-healthcheck --bin spotq-healthcheck \
    && mkdir /out \
    && release=target/x86_64-unknown-linux-musl/release \
    && cp "$release/spotq-controller" "$release/spotq-healthcheck" \
        /etc/ssl/certs/ca-certificates.crt /out/

FROM scratch AS dist-worker
COPY dist/worker dist/spotq-healthcheck dist/ca-certificates.crt /out/

FROM scratch AS dist-controller
COPY dist/spotq-controller dist/spotq-healthcheck dist/ca-certificates.crt /out/

# The switch. (WORKDIR: buildah 1.28 leaves a working container behind for a stage with
# no instruction.)
FROM ${BINARIES}-worker AS worker-binaries
WORKDIR /out
FROM ${BINARIES}-controller AS controller-binaries
WORKDIR /out

FROM scratch AS controller
COPY --from=controller-binaries --chmod=0444 /out/ca-certificates.crt /etc/ssl/certs/
COPY --from=controller-binaries --chmod=0555 /out/spotq-healthcheck /out/spotq-controller /usr/local/bin/
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# /metrics and /health (SPOTQ_CONTROLLER_HTTP_ADDR, default 0.0.0.0:9090).
EXPOSE 9090
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/spotq-healthcheck", "http://127.0.0.1:9090/health"]
ENTRYPOINT ["/usr/local/bin/spotq-controller"]

# Last, so that a build without --target makes the worker.
FROM scratch AS worker
COPY --from=worker-binaries --chmod=0444 /out/ca-certificates.crt /etc/ssl/certs/
COPY --from=worker-binaries --chmod=0555 /out/spotq-healthcheck /out/worker /usr/local/bin/
ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
USER 65532:65532
# /metrics, /health and /ready (examples/basic-sqs-worker.rs serves them on $SPOTQ_HTTP_ADDR,
# default 0.0.0.0:8080; a task that moves them probes the new port in its health check).
EXPOSE 8080
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["/usr/local/bin/spotq-healthcheck", "http://127.0.0.1:8080/health"]
ENTRYPOINT ["/usr/local/bin/worker"]
