# The devflow-monitor exporter as a container: `docker compose up` builds it from this repository.
# Its dependencies all ship wheels (the mixin's jsonnet is a build extra it does not install), so the
# image needs no compiler.
FROM python:3.12.7-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEVFLOW_MONITOR_COLLECTORS_LOGS_STATE_FILE=/var/lib/devflow-monitor/log-offsets.json
WORKDIR /src
COPY pyproject.toml README.md ./
COPY core ./core
COPY cli ./cli
COPY exporter ./exporter
COPY ops ./ops
COPY simulator ./simulator
COPY stack ./stack
COPY dashboards ./dashboards
COPY alerting ./alerting
COPY generate ./generate
COPY webdash ./webdash
COPY docs/__init__.py docs/runbook.md ./docs/
RUN pip install /src \
 && rm -rf /src \
 && groupadd --system --gid 10001 devflow \
 && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/devflow-monitor --create-home devflow \
 && install -d -o 10001 -g 10001 /devflow
# /devflow: where compose mounts DevFlow's data read-only; owned by the user so the demo's volume is writable.
USER 10001:10001
WORKDIR /var/lib/devflow-monitor
EXPOSE 9764
# Inside the container only: the port is published on the host's loopback by docker-compose.yml.
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:9764/health', timeout=2).status != 200)"]
ENTRYPOINT ["devflow-monitor"]
CMD ["serve", "--web.listen-address", "0.0.0.0:9764"]
