# syntax=docker/dockerfile:1
#
# The mediator as a small, non-root container image.
#
#   docker build -t mediator --build-arg VERSION=$(git describe --tags --always --dirty) .
#   docker run -p 8080:8080 \
#     -e MEDIATOR_DATABASE_URL=postgres://user:pass@db:5432/mediator \
#     -e MEDIATOR_MASTER_KEY=... \
#     -e MEDIATOR_ENDPOINT=https://mediator.example.org,wss://mediator.example.org \
#     mediator
#
# Ports: 8080 is DIDComm (HTTP POST and WebSocket, /invitation, /healthz,
# /readyz); 9090 is the admin listener (/metrics, /healthz, /readyz): publish
# it only to your monitoring network, never to the internet.
# A whole deployment (PostgreSQL, two instances, nginx) is in
# configs/docker-compose.yml.

# The build runs on the builder's own platform and cross-compiles, so
# `docker buildx build --platform linux/amd64,linux/arm64 .` needs no emulation.
FROM --platform=$BUILDPLATFORM golang:1.26-bookworm AS build
WORKDIR /src
# Modules first: this layer is reused until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod \
    go mod download
COPY . .
ARG VERSION=dev
ARG TARGETOS
ARG TARGETARCH
RUN --mount=type=cache,target=/go/pkg/mod \
    --mount=type=cache,target=/root/.cache/go-build \
    CGO_ENABLED=0 GOOS=${TARGETOS:-linux} GOARCH=${TARGETARCH} \
    go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
      -o /out/mediator ./cmd/mediator

# distroless/static: no shell, no package manager; CA certificates (for the
# webhook over HTTPS), tzdata and /etc/passwd with the nonroot user only.
FROM gcr.io/distroless/static-debian12:nonroot
ARG VERSION=dev
LABEL org.opencontainers.image.title="mediator" \
      org.opencontainers.image.description="DIDComm v1 mediator for wallets, on PostgreSQL" \
      org.opencontainers.image.source="https://github.com/openmediator/mediator" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/mediator /usr/local/bin/mediator
# The numeric id (distroless' nonroot, 65532) lets Kubernetes'
# runAsNonRoot check it without reading /etc/passwd.
USER 65532:65532
ENV MEDIATOR_LISTEN=0.0.0.0:8080 \
    MEDIATOR_ADMIN_LISTEN=0.0.0.0:9090 \
    MEDIATOR_LOG_FORMAT=json
EXPOSE 8080 9090
# `mediator healthcheck` GETs $MEDIATOR_HEALTHCHECK_URL (default
# http://127.0.0.1:8080/healthz) and exits 0 on 200: no curl needed.
HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/usr/local/bin/mediator", "healthcheck"]
# SIGTERM starts a graceful shutdown (sockets closed, in-flight messages
# handed back, the instance leaves the cluster) bounded by
# MEDIATOR_SHUTDOWN_TIMEOUT (20s): give `docker stop` more than that (-t 30).
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/mediator"]
CMD ["serve"]
