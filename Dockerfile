# Images of the injector and the agent: static binaries on distroless.
#   docker build --target injector -t IMG_INJECTOR .
#   docker build --target agent -t IMG_AGENT .
# (make docker-build does both.)
ARG GO_VERSION=1.26

FROM --platform=$BUILDPLATFORM golang:${GO_VERSION} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY api/ api/
COPY cmd/ cmd/
COPY internal/ internal/
COPY templates/ templates/
COPY webhook/ webhook/
ARG TARGETOS=linux
ARG TARGETARCH=amd64
ARG VERSION=""
RUN CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags="-s -w -X github.com/tandem-mesh/tandem/internal/version.Version=${VERSION}" \
      -o /out/injector ./cmd/injector && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags="-s -w -X github.com/tandem-mesh/tandem/internal/version.Version=${VERSION}" \
      -o /out/agent ./cmd/agent && \
    CGO_ENABLED=0 GOOS=$TARGETOS GOARCH=$TARGETARCH go build -trimpath \
      -ldflags="-s -w -X github.com/tandem-mesh/tandem/internal/version.Version=${VERSION}" \
      -o /out/tandem-cni ./cmd/cni

FROM gcr.io/distroless/static-debian12:nonroot AS injector
COPY --from=build /out/injector /usr/local/bin/injector
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/injector"]

# The pod spec sets the user: 1337 for the agent sidecar, root with only
# NET_ADMIN and NET_RAW for the capture init container, 1338 for
# tandem-validate. tandem-cni (the CNI plugin and its installer, run by the
# config/cni DaemonSet) ships in the same image.
FROM gcr.io/distroless/static-debian12:nonroot AS agent
COPY --from=build /out/agent /usr/local/bin/agent
COPY --from=build /out/tandem-cni /usr/local/bin/tandem-cni
USER 1337:1337
ENTRYPOINT ["/usr/local/bin/agent"]
