# luma-mcp for hosted use: streamable HTTP at /mcp, GET /health for the load balancer.
# Needs LUMA_MCP_API_KEYS (or _FILE) with ACEDATACLOUD_API_TOKEN, or LUMA_MCP_AUTH=passthrough: without
# either the server refuses to listen beyond loopback. compose.yaml runs two replicas behind a proxy.
# Not a guess: tests/e2e/test_install.py runs every command below outside a container (the same
# wheel build from the same files, the same install, entry point, environment and health check).

FROM python:3.12-slim AS build
WORKDIR /src
COPY pyproject.toml README.md LICENSE ./
COPY src ./src
# The package's wheel (the standard build frontend), then every dependency as a wheel beside it:
# the runtime stage installs offline from these.
RUN python -m pip install --no-cache-dir "build>=1.3,<2" \
 && python -m build --wheel --outdir /wheels . \
 && python -m pip wheel --no-cache-dir --wheel-dir /wheels "$(ls /wheels/luma_dream_machine_mcp-*.whl)[postgres]"

FROM python:3.12-slim
LABEL io.modelcontextprotocol.server.name="io.github.luma-mcp/luma-mcp"
LABEL org.opencontainers.image.source="https://github.com/luma-mcp/luma-mcp"
LABEL org.opencontainers.image.licenses="MIT"
RUN useradd --system --uid 10001 --home-dir /data --create-home luma
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    python -m pip install --no-cache-dir --no-index --find-links /wheels "luma-dream-machine-mcp[postgres]"
# Numeric, so that Kubernetes' runAsNonRoot can tell it is not root.
USER 10001
WORKDIR /data
# The SQLite ledger and downloads when no LUMA_LEDGER_URL is set: mount a volume here to keep them.
ENV LUMA_LEDGER_PATH=/data/ledger.sqlite3 \
    LUMA_DOWNLOAD_DIR=/data/videos \
    PYTHONUNBUFFERED=1
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import json, sys, urllib.request; answer = urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4); sys.exit(json.load(answer)['status'] != 'ok')"]
ENTRYPOINT ["luma-mcp"]
CMD ["--transport", "http", "--host", "0.0.0.0", "--port", "8000"]
