# syntax=docker/dockerfile:1
# The operator image: a static (musl) build of `zenml-operator` on distroless/static, run as 65532 (nonroot).
#   docker build -t ghcr.io/zenml-io/zenml-operator:0.1.0 .
# The chart's Deployment expects exactly this: ENTRYPOINT /zenml-operator, `run` with flags as arguments, nothing
# written to disk, no privileges.
#
# The e2e tests build this same file (e2e/image, with buildah) and run it on their node through the chart. Two build
# arguments are all that differ, because no registry is reachable there:
#   BINARY=prebuilt  takes the static binary from the build context (holding only `zenml-operator`, built by cargo
#                    for x86_64-unknown-linux-musl on the host) instead of compiling it in the `build` stage
#   BASE=scratch     instead of distroless/static (which adds /etc/passwd, CA certificates, tzdata and /tmp: the
#                    operator reads none of them)
ARG BASE=gcr.io/distroless/static-debian12:nonroot
ARG BINARY=build

FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends musl-tools && rm -rf /var/lib/apt/lists/*
RUN rustup target add "$(uname -m)-unknown-linux-musl"
WORKDIR /src
COPY . .
# The registry and target directories are build caches, so the binary is copied out in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    target="$(uname -m)-unknown-linux-musl" && \
    cargo build --profile production --locked -p zenml-operator --target "$target" && \
    cp "target/$target/production/zenml-operator" /zenml-operator

FROM scratch AS prebuilt
COPY zenml-operator /zenml-operator

FROM ${BINARY} AS binary

FROM ${BASE}
COPY --from=binary /zenml-operator /zenml-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/zenml-operator"]
CMD ["run"]
