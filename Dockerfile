# tickcast — a live streaming prediction service for crypto futures.
#
# Two stages on one base: "builder" makes a virtual environment under /opt/tickcast from
# requirements.lock (every file checked against its hash) and the project; the runtime stage
# takes that environment alone, with no pip, no compiler, no matplotlib and no Redis (Redis runs
# as its own container or service). deploy/docker/README.md: building with and without a
# registry, running, volumes, ports and settings.
#
#   docker build -t tickcast .                      # with registry access
#   make image                                      # offline: deploy/docker/build-image
ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS builder

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /src
# With wheels in deploy/docker/wheelhouse (deploy/docker/fetch-wheels fills it on the host) pip
# reads nothing else (--no-index); with none it downloads the same locked files from the index.
COPY deploy/docker/wheelhouse/ /wheelhouse/
COPY requirements.lock ./
RUN set -eu; \
    if [ -n "$(find /wheelhouse -name '*.whl' -print -quit)" ]; then offline=--no-index; \
    else offline=; fi; \
    python3 -m venv /opt/tickcast; \
    /opt/tickcast/bin/python -m pip install --quiet $offline --find-links /wheelhouse \
        --require-hashes --only-binary :all: -r requirements.lock

COPY pyproject.toml README.md LICENSE ./
COPY model ./model
COPY service ./service
RUN set -eu; \
    if [ -n "$(find /wheelhouse -name '*.whl' -print -quit)" ]; then offline=--no-index; \
    else offline=; fi; \
    /opt/tickcast/bin/python -m pip install --quiet $offline --find-links /wheelhouse \
        --no-deps .; \
    /opt/tickcast/bin/python -m pip uninstall --quiet --yes pip setuptools; \
    /opt/tickcast/bin/tickcast --version


FROM ${BASE_IMAGE}

# A fixed, unprivileged UID/GID (10001) that owns the state directory, so that a volume or a
# host directory mounted there can be given to it (chown 10001:10001) and Kubernetes'
# runAsNonRoot can verify it.
RUN groupadd --gid 10001 tickcast \
    && useradd --uid 10001 --gid 10001 --no-log-init --no-create-home \
        --home-dir /var/lib/tickcast --shell /usr/sbin/nologin tickcast \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tickcast

COPY --from=builder /opt/tickcast /opt/tickcast

# Metrics listen on every interface *of the container* (0.0.0.0), which is what lets a port
# mapping or a Prometheus on the container network reach them; outside a container the service
# keeps its default of 127.0.0.1. Publish the port to the host's loopback only
# (docker run -p 127.0.0.1:9464:9464); with --network host set TICKCAST__METRICS__HOST=127.0.0.1,
# since the container's interfaces are then the host's. Every command (run, ingest, worker)
# serves /metrics, /healthz and /readyz on 9464 here.
ENV PATH=/opt/tickcast/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TICKCAST_STATE_DIR=/var/lib/tickcast \
    TICKCAST__METRICS__HOST=0.0.0.0 \
    TICKCAST__METRICS__PORT=9464

VOLUME /var/lib/tickcast
WORKDIR /var/lib/tickcast
USER 10001:10001
EXPOSE 9464

HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD ["/opt/tickcast/bin/python", "-c", "import os, urllib.request as u; u.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TICKCAST__METRICS__PORT', '9464'), timeout=4)"]

# The default runs the service (ingest + worker in one process) on the configured exchange
# (TICKCAST__EXCHANGE__NAME; the simulated one unless set) against the Redis that
# TICKCAST__REDIS__URL names: without it, it stops at once with one line saying so. Production
# runs the split layout instead: `ingest` and `worker`, each in its own container.
ENTRYPOINT ["tickcast"]
CMD ["run", "--no-view", "--log-format", "json"]
