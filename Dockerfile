# blindspot's container image: the static agent binary (CGO_ENABLED=0, made
# by `make build`) and CA certificates, nothing else -- no shell, no package
# manager -- as node_exporter's image does. `make image` stages the build
# context (the binary and /etc/ssl/certs/ca-certificates.crt side by side)
# and builds it with docker or podman; FROM scratch needs no pull.
#
# Run it like deploy/daemonset.yaml does: host PID namespace, every
# capability dropped except the four the agent declares (cmd/agent/checks.go
# neededCaps), read-only root filesystem:
#
#   podman run --pid=host --network=host --read-only --cap-drop=ALL \
#     --cap-add=BPF,PERFMON,SYS_PTRACE,DAC_READ_SEARCH \
#     ghcr.io/blindspot-dev/blindspot:VERSION
#
# The agent runs as uid 0 without any other capability: CAP_BPF and
# CAP_PERFMON load the programs and attach uprobes, CAP_SYS_PTRACE reads
# other programs' memory and /proc/PID/exe, CAP_DAC_READ_SEARCH reads
# executables whose mode denies it. A non-root user would need the same
# capabilities as ambient ones, which container runtimes do not grant.
FROM scratch

ARG VERSION=dev
ARG REVISION=unknown

LABEL org.opencontainers.image.title="blindspot" \
      org.opencontainers.image.description="eBPF uprobe metrics for Go programs: HTTP, gRPC, database and runtime metrics without code changes" \
      org.opencontainers.image.source="https://github.com/blindspot-dev/blindspot" \
      org.opencontainers.image.url="https://github.com/blindspot-dev/blindspot" \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}"

COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY blindspot /bin/blindspot

USER 0:0
EXPOSE 9464
ENTRYPOINT ["/bin/blindspot"]
CMD ["--web.listen-address=:9464"]
