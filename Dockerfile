# The devflow-monitor exporter as a container: `docker compose up` builds it from this repository.
# Wheels are built in a throw-away stage, so the runtime image carries no compiler.
FROM python:3.12.7-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# A C/C++ toolchain only for dependencies without a wheel for this platform (jsonnet on some arches).
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY exporter ./exporter
COPY dashboards ./dashboards
COPY alerting ./alerting
RUN pip wheel --wheel-dir /wheels .

FROM python:3.12.7-slim-bookworm
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DEVFLOW_MONITOR_COLLECTORS_LOGS_STATE_FILE=/var/lib/devflow-monitor/log-offsets.json
COPY --from=build /wheels /wheels
RUN pip install --no-index --find-links /wheels devflow-monitor \
 && rm -rf /wheels \
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
