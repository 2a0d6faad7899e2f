# syntax=docker/dockerfile:1
# Jobico: one image for the API (gunicorn), workers (Celery), migrations and Flower.
#   docker build -t jobico .
#   docker run jobico api|worker|migrate|flower|beat|jobico ...   (docker/entrypoint.sh)
# Checked by tests/integration/test_container.py (hadolint + structure).

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: compile/install the dependencies into a virtualenv ---------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONDONTWRITEBYTECODE=1
# compilers only here, for dependencies without a wheel on this architecture
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev make \
 && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /app
COPY requirements.txt ./
# the runtime part of requirements.txt only (everything above "# test-only")
RUN sed '/^# test-only/,$d' requirements.txt > /tmp/runtime-requirements.txt \
 && pip install -r /tmp/runtime-requirements.txt
COPY pyproject.toml README.md ./
COPY jobico_core ./jobico_core
COPY jobico_runtime ./jobico_runtime
COPY jobico_api ./jobico_api
COPY jobico_worker ./jobico_worker
COPY jobico_cli ./jobico_cli
COPY jobico_ops ./jobico_ops
COPY examples ./examples
# a wheel, installed: the code, the migrations (jobico_core/migrations) and the demo (jobico_ops/examples)
# live in the virtualenv's site-packages; /app is only the build's source and is not copied on
RUN pip install --no-deps . \
 && python -m compileall -q /opt/venv/lib

# --- runtime: the virtualenv and the code, no compilers, not root ------------------
FROM ${PYTHON_IMAGE} AS runtime
LABEL org.opencontainers.image.title="jobico" \
      org.opencontainers.image.description="Multi-tenant platform running tenants' WebAssembly jobicolets" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    JOBICO_API_HOST=0.0.0.0 \
    JOBICO_API_PORT=8080 \
    JOBICO_DATA_DIR=/var/lib/jobico \
    JOBICO_CACHE_DIR=/var/cache/jobico \
    JOBICO_LOG_FORMAT=json \
    PROMETHEUS_MULTIPROC_DIR=/tmp/jobico-metrics \
    FORWARDED_ALLOW_IPS=*
RUN groupadd --system --gid 10001 jobico \
 && useradd --system --uid 10001 --gid jobico --home-dir /var/lib/jobico --shell /usr/sbin/nologin jobico \
 && mkdir -p /var/lib/jobico /var/cache/jobico \
 && chown jobico:jobico /var/lib/jobico /var/cache/jobico
COPY --from=build /opt/venv /opt/venv
COPY --chmod=0755 docker/entrypoint.sh /usr/local/bin/jobico-entrypoint
WORKDIR /var/lib/jobico
USER 10001:10001
EXPOSE 8080 8081 5555 9100 9101
# the API's liveness; worker/flower containers override it (docker-compose.yml, Helm chart)
HEALTHCHECK --interval=15s --timeout=5s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('JOBICO_API_PORT', '8080'), timeout=4).status == 200 else 1)"]
ENTRYPOINT ["/usr/local/bin/jobico-entrypoint"]
CMD ["api"]
