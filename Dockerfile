# syntax=docker/dockerfile:1
# The operator image: a static (musl) build of `zenml-operator` on distroless/static, run as 65532 (nonroot).
#   docker build -t ghcr.io/zenml-io/zenml-operator:0.1.0 .
# Not exercised by the tests (no container engine runs in CI); the chart's Deployment expects exactly this:
# ENTRYPOINT /zenml-operator, `run` with flags as arguments, nothing written to disk, no privileges.

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

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /zenml-operator /zenml-operator
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/zenml-operator"]
CMD ["run"]
