# spotplan: the operator and CLI in one binary.
#
# The build stage runs exactly the command scripts/test.sh uses (`cargo build --release
# --locked`) on the same Debian 12 toolchain, so the binary the tests run is the binary shipped.
# The final stage is distroless (glibc + CA certificates, no shell), non-root.
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crates ./crates
COPY benches ./benches
COPY crds ./crds
RUN cargo build --release --locked --bin spotplan \
    && cp target/release/spotplan /spotplan

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="spotplan" \
      org.opencontainers.image.description="Picks EC2 Spot instance types and writes them into Karpenter NodePools" \
      org.opencontainers.image.source="https://github.com/spotplan/spotplan" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /spotplan /usr/local/bin/spotplan
# The root filesystem is read-only in the chart: fetched market data is cached on an emptyDir.
ENV XDG_CACHE_HOME=/cache
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/spotplan"]
CMD ["controller"]
