# toolgated container image: Debian 12, built with the project's own scripts.
#
#   docker build -t toolgate/toolgated:0.1.0 .
#   docker run --rm -p 50051:50051 -p 9090:9090 toolgate/toolgated:0.1.0
#
# The image runs toolgated as uid 10001 on 0.0.0.0:50051 (gRPC) and
# 0.0.0.0:9090 (Prometheus metrics) with the policy at
# /etc/toolgate/policy.yaml (the example policy unless a file or a ConfigMap
# is mounted there). Every setting is a TOOLGATE_* variable (`toolgated --help`
# lists them): override with `-e TOOLGATE_REDIS=redis://...` or with flags
# after the image name. Kubernetes probes the gRPC health service, so the
# image has no HEALTHCHECK.

# ---- build -------------------------------------------------------------------
FROM debian:bookworm-slim AS build
WORKDIR /src
COPY . .
# install-deps.sh installs the Debian build dependencies (it runs apt-get as
# root here); build.sh configures and builds with CMake.
RUN scripts/install-deps.sh \
 && rm -rf /var/lib/apt/lists/*
RUN BUILD_TYPE=Release scripts/build.sh /build \
      -DTOOLGATE_BUILD_TESTS=OFF -DTOOLGATE_BUILD_BENCH=OFF \
 && strip /build/toolgated /build/toolgate \
 && /build/toolgated --help >/dev/null

# ---- runtime -----------------------------------------------------------------
FROM debian:bookworm-slim
# Only the shared libraries the two binaries link (ldd build/toolgated):
# gRPC (with reflection, upb, address_sorting), protobuf, yaml-cpp, RE2,
# hiredis, Abseil, OpenSSL, c-ares, zlib, and prometheus-cpp (with the
# civetweb HTTP server it uses) for /metrics.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      libgrpc++1.51 libgrpc29 libprotobuf32 libyaml-cpp0.7 libre2-9 \
      libhiredis0.14 libabsl20220623 libssl3 libc-ares2 zlib1g \
      libprometheus-cpp-core1.0 libprometheus-cpp-pull1.0 libcivetweb1 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 toolgate \
 && useradd --system --uid 10001 --gid 10001 --no-create-home \
      --home-dir /nonexistent --shell /usr/sbin/nologin toolgate

COPY --from=build /build/toolgated /build/toolgate /usr/local/bin/
COPY examples/ /usr/share/toolgate/examples/
COPY examples/policy.yaml /etc/toolgate/policy.yaml

ENV TOOLGATE_LISTEN=0.0.0.0:50051 \
    TOOLGATE_POLICY=/etc/toolgate/policy.yaml \
    TOOLGATE_METRICS_LISTEN=0.0.0.0:9090

USER 10001:10001
EXPOSE 50051 9090
ENTRYPOINT ["/usr/local/bin/toolgated"]
