# syntax=docker/dockerfile:1
# Build: docker build -t mediator .
# Run:   docker run -p 8080:8080 -e MEDIATOR_DATABASE_URL=... -e MEDIATOR_MASTER_KEY=... mediator
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/mediator ./cmd/mediator

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/mediator /usr/local/bin/mediator
USER nonroot:nonroot
ENV MEDIATOR_LISTEN=0.0.0.0:8080
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/mediator"]
CMD ["serve"]
