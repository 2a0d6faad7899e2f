#!/bin/sh
# Jobico's container entrypoint: one image, one role per container.
#   api      gunicorn serving jobico_api.wsgi:app (JOBICO_API_HOST/PORT, JOBICO_API_WORKERS/THREADS)
#   worker   a Celery worker (JOBICO_WORKER_CONCURRENCY, JOBICO_WORKER_TENANTS, JOBICO_WORKER_METRICS_PORT);
#            extra arguments go to `celery worker`
#   migrate  upgrade the database schema (`jobico migrate`), then exit
#   flower   Flower on FLOWER_PORT (default 5555); FLOWER_BASIC_AUTH=user:pass protects it
#   beat     Celery beat firing the packages' cron triggers (jobico_worker.beat:JobicoScheduler);
#            run one (a second one only stands by: a Redis lock)
#   mqtt-bridge  the MQTT bridge (`jobico mqtt-bridge`: JOBICO_MQTT_URL, JOBICO_MQTT_PREFIX,
#            JOBICO_MQTT_CLIENT_ID, JOBICO_MQTT_METRICS_PORT); run one per client id
#   health   exit 0 when the API on this container answers /health (for health checks)
#   jobico   the CLI, e.g. `docker run --rm jobico jobico --help`
#   anything else is executed as is (e.g. `sh`).
set -eu

prepare_metrics_dir() {
    # prometheus-client multiprocess mode: the directory must start empty
    if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
        mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
        find "$PROMETHEUS_MULTIPROC_DIR" -mindepth 1 -delete 2>/dev/null || true
    fi
}

role="${1:-api}"
[ "$#" -gt 0 ] && shift

case "$role" in
    api)
        prepare_metrics_dir
        exec gunicorn -c python:jobico_api.gunicorn_conf "$@" jobico_api.wsgi:app
        ;;
    worker)
        prepare_metrics_dir
        exec celery -A jobico_worker.app worker \
            --loglevel "${JOBICO_LOG_LEVEL:-INFO}" \
            --concurrency "${JOBICO_WORKER_CONCURRENCY:-2}" \
            --hostname "${JOBICO_WORKER_NAME:-worker}@%h" \
            --pool prefork --without-gossip --without-mingle "$@"
        ;;
    migrate)
        exec jobico migrate "$@"
        ;;
    flower)
        # Flower reads task events only; it needs no multiprocess metrics dir of ours
        unset PROMETHEUS_MULTIPROC_DIR
        if [ -z "${FLOWER_BASIC_AUTH:-}" ]; then unset FLOWER_BASIC_AUTH; fi
        exec celery -A jobico_worker.app flower \
            --address="${FLOWER_ADDRESS:-0.0.0.0}" --port="${FLOWER_PORT:-5555}" \
            --persistent=False "$@"
        ;;
    beat)
        exec celery -A jobico_worker.app beat --loglevel "${JOBICO_LOG_LEVEL:-INFO}" \
            --scheduler jobico_worker.beat:JobicoScheduler "$@"
        ;;
    mqtt-bridge)
        prepare_metrics_dir
        exec jobico mqtt-bridge "$@"
        ;;
    health)
        exec python -c "import os,sys,urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('JOBICO_API_PORT', '8080'), timeout=4).status == 200 else 1)"
        ;;
    jobico)
        exec jobico "$@"
        ;;
    *)
        exec "$role" "$@"
        ;;
esac
