# A non-root image that serves the shipped model repository on port 50051.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 \
    SMALLGUARD_HOST=0.0.0.0 SMALLGUARD_PORT=50051

WORKDIR /src
COPY pyproject.toml README.md ./
COPY proto ./proto
COPY server ./server
COPY verifiers ./verifiers
COPY client ./client
COPY models ./models
RUN pip install . && rm -rf /src

RUN useradd --system --uid 10001 --no-create-home smallguard \
    && mkdir -p /var/lib/smallguard && chown 10001 /var/lib/smallguard
# The store's default SQLite file: mount a volume here to keep it, or give --store postgresql://...
ENV XDG_STATE_HOME=/var/lib/smallguard
VOLUME /var/lib/smallguard
USER 10001
EXPOSE 50051
# Probe with any gRPC health client, e.g. grpc_health_probe -addr=:50051 (Kubernetes: grpc probe).
ENTRYPOINT ["smallguard"]
CMD ["serve"]
