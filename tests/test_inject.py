"""``collectors.k8s.inject``: the collector sidecar attached to real-looking manifests, which still
validate against the Kubernetes 1.30 schemas (kubernetes-validate, strict: unknown fields fail)."""

from __future__ import annotations

import copy
import os
import re
from typing import Any

import kubernetes_validate
import pytest
import yaml

from collectors.k8s.inject import (
    COLLECTOR,
    InjectOptions,
    inject_manifests,
    inject_pod_spec,
    inject_pod_template,
    inject_yaml,
)
from monitor.errors import InputError

K8S = "1.30"

# A BentoML service as its users deploy it by hand (bentoml containerize + a Deployment), with the
# things that sit next to it: its Service, a second Service of another app that targets the same port
# number, an HPA and a ConfigMap.
BENTO = """\
apiVersion: v1
kind: ConfigMap
metadata:
  name: fraud-scorer-bentoml
  namespace: models
data:
  config.yaml: |
    api_server:
      workers: 2
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: fraud-scorer
  namespace: models
  labels:
    app.kubernetes.io/name: fraud-scorer
    app.kubernetes.io/version: v7
spec:
  replicas: 3
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxSurge: 1, maxUnavailable: 0}
  selector:
    matchLabels: {app.kubernetes.io/name: fraud-scorer}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: fraud-scorer
        app.kubernetes.io/version: v7
        app.kubernetes.io/component: predictor
    spec:
      serviceAccountName: fraud-scorer
      terminationGracePeriodSeconds: 30
      securityContext: {runAsNonRoot: true, runAsUser: 1034, fsGroup: 1034}
      containers:
        - name: bento
          image: registry.example.com/ml/fraud_scorer:7f3kq2hv5cbyzrgs
          imagePullPolicy: IfNotPresent
          args: ["serve", "--port", "3000"]
          ports:
            - {name: http, containerPort: 3000, protocol: TCP}
          env:
            - {name: BENTOML_CONFIG, value: /etc/bentoml/config.yaml}
            - name: BENTOML_NUM_WORKERS
              valueFrom: {resourceFieldRef: {resource: limits.cpu}}
          readinessProbe:
            httpGet: {path: /readyz, port: http}
            initialDelaySeconds: 5
            periodSeconds: 5
          livenessProbe:
            httpGet: {path: /livez, port: http}
            periodSeconds: 10
          resources:
            requests: {cpu: "1", memory: 1Gi}
            limits: {cpu: "2", memory: 2Gi}
          volumeMounts:
            - {name: config, mountPath: /etc/bentoml, readOnly: true}
      volumes:
        - name: config
          configMap: {name: fraud-scorer-bentoml}
---
apiVersion: v1
kind: Service
metadata:
  name: fraud-scorer
  namespace: models
  labels: {app.kubernetes.io/name: fraud-scorer}
spec:
  type: ClusterIP
  selector: {app.kubernetes.io/name: fraud-scorer}
  ports:
    - {name: http, port: 80, targetPort: http, protocol: TCP}
---
apiVersion: v1
kind: Service
metadata:
  name: feature-store
  namespace: models
spec:
  selector: {app.kubernetes.io/name: feature-store}
  ports:
    - {name: http, port: 80, targetPort: 3000}
---
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: fraud-scorer
  namespace: models
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: fraud-scorer}
  minReplicas: 3
  maxReplicas: 12
  metrics:
    - type: Resource
      resource:
        name: cpu
        target: {type: Utilization, averageUtilization: 70}
"""


def validate(doc: dict[str, Any], version: str = K8S) -> None:
    kubernetes_validate.validate(doc, version, strict=True)


def by_kind(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def one_line(exc: pytest.ExceptionInfo[BaseException]) -> str:
    text = str(exc.value)
    assert text and "\n" not in text
    return text


def downward(ref: str, pod_metadata: dict[str, Any]) -> str:
    """What the kubelet puts into an env var from a fieldRef."""
    label = re.fullmatch(r"metadata\.labels\['(.+)'\]", ref)
    if label:
        return str(pod_metadata.get("labels", {}).get(label.group(1), ""))
    return str(pod_metadata[ref.removeprefix("metadata.")])


def env_of(container: dict[str, Any], pod_metadata: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e["value"] if "value" in e else downward(e["valueFrom"]["fieldRef"]["fieldPath"],
                                                                  pod_metadata)
            for e in container["env"]}


def collector_of(spec: dict[str, Any]) -> dict[str, Any]:
    [found] = [c for key in ("containers", "initContainers") for c in spec.get(key, [])
               if c["name"] == COLLECTOR]
    return found


def test_the_realistic_manifest_itself_validates_so_the_checks_below_mean_something():
    for doc in yaml.safe_load_all(BENTO):
        validate(doc)
    broken = yaml.safe_load_all(BENTO.replace("containerPort: 3000", "containerPort: \"3000\""))
    with pytest.raises(kubernetes_validate.ValidationError):
        for doc in broken:
            validate(doc)


def test_a_bentoml_deployment_gets_the_collector_and_every_document_still_validates():
    original = by_kind(list(yaml.safe_load_all(BENTO)))
    docs = by_kind(list(yaml.safe_load_all(inject_yaml(BENTO, InjectOptions()))))
    for doc in docs.values():
        validate(doc)
    assert docs.keys() == original.keys()

    template = docs[("Deployment", "fraud-scorer")]["spec"]["template"]
    before = original[("Deployment", "fraud-scorer")]["spec"]["template"]
    model, collector = template["spec"]["containers"]
    assert model == before["spec"]["containers"][0]  # the model container is untouched
    assert {k: v for k, v in template["spec"].items() if k != "containers"} == \
        {k: v for k, v in before["spec"].items() if k != "containers"}
    assert collector["name"] == COLLECTOR and collector["image"] == "ghcr.io/example/driftline:latest"
    assert collector["args"] == ["collect"]
    metadata = {**template["metadata"], "name": "fraud-scorer-5d9c7-x2x4q", "namespace": "models"}
    assert env_of(collector, metadata) == {
        "DRIFTLINE_UPSTREAM": "http://127.0.0.1:3000",
        "DRIFTLINE_LISTEN": "0.0.0.0:8081",
        "DRIFTLINE_METRICS_PORT": "9091",
        "DRIFTLINE_KAFKA": "kafka.kafka.svc:9092",
        "DRIFTLINE_MODEL": "fraud-scorer",
        "DRIFTLINE_MODEL_VERSION": "v7",
        "POD_NAMESPACE": "models",
        "POD_NAME": "fraud-scorer-5d9c7-x2x4q",
    }
    assert [(p["name"], p["containerPort"]) for p in collector["ports"]] == \
        [("driftline", 8081), ("driftline-metrics", 9091)]
    assert collector["resources"] == {"requests": {"cpu": "50m", "memory": "64Mi"},
                                      "limits": {"memory": "256Mi"}}
    for probe in ("readinessProbe", "livenessProbe"):
        assert collector[probe]["httpGet"] == {"path": "/healthz", "port": "driftline-metrics"}
    security = collector["securityContext"]
    assert security["runAsNonRoot"] is True and security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False and security["capabilities"] == {"drop": ["ALL"]}
    assert template["metadata"]["annotations"] == {"prometheus.io/scrape": "true",
                                                   "prometheus.io/port": "9091",
                                                   "prometheus.io/path": "/metrics"}

    # traffic to the model now goes through the collector; the other app's Service is left alone
    assert docs[("Service", "fraud-scorer")]["spec"]["ports"] == \
        [{"name": "http", "port": 80, "targetPort": 8081, "protocol": "TCP"}]
    for key in (("Service", "feature-store"), ("HorizontalPodAutoscaler", "fraud-scorer"),
                ("ConfigMap", "fraud-scorer-bentoml")):
        assert docs[key] == original[key]


def test_the_collector_env_is_read_by_driftline_collect_as_the_sidecar_settings(monkeypatch):
    from monitor.cli import main as cli

    options = InjectOptions(sample_rate=0.25, cpu_limit="500m")
    docs = inject_manifests(list(yaml.safe_load_all(BENTO)), options)
    template = by_kind(docs)[("Deployment", "fraud-scorer")]["spec"]["template"]
    metadata = {**template["metadata"], "name": "fraud-scorer-abc", "namespace": "models"}
    collector = collector_of(template["spec"])
    assert collector["args"] == ["collect"]
    for name, value in env_of(collector, metadata).items():
        monkeypatch.setenv(name, value)
    seen = []
    monkeypatch.setattr("collectors.sidecar.run", seen.append)
    assert cli.main(collector["args"]) == 0
    [settings] = seen
    assert (settings.listen_host, settings.listen_port, settings.metrics_port) == ("0.0.0.0", 8081, 9091)
    assert settings.kafka == "kafka.kafka.svc:9092"
    assert settings.proxy.upstream == "http://127.0.0.1:3000"
    assert (settings.proxy.model, settings.proxy.model_version) == ("fraud-scorer", "v7")
    assert settings.proxy.sample_rate == 0.25
    assert collector["resources"]["limits"]["cpu"] == "500m"
    assert settings.proxy.max_cpu == 0.4 and settings.proxy.shed_overload  # 80% of the CPU limit


def test_injecting_twice_changes_nothing():
    once = inject_yaml(BENTO, InjectOptions())
    assert inject_yaml(once, InjectOptions()) == once
    assert inject_yaml(once, InjectOptions(native_sidecar=True, collector_port=7000)) == once
    spec = yaml.safe_load_all(BENTO)
    pod_spec = [d for d in spec if d["kind"] == "Deployment"][0]["spec"]["template"]["spec"]
    injected = inject_pod_spec(pod_spec, InjectOptions())
    assert inject_pod_spec(injected, InjectOptions()) == injected
    native = inject_pod_spec(pod_spec, InjectOptions(native_sidecar=True))
    assert inject_pod_spec(native, InjectOptions(native_sidecar=True)) == native


def test_the_input_is_never_modified():
    docs = list(yaml.safe_load_all(BENTO))
    kept = copy.deepcopy(docs)
    inject_manifests(docs, InjectOptions())
    template = docs[1]["spec"]["template"]
    inject_pod_template(template, InjectOptions(native_sidecar=True))
    inject_pod_spec(template["spec"], InjectOptions())
    assert docs == kept


@pytest.mark.parametrize("how", ["option", "annotation"])
def test_the_native_sidecar_is_an_init_container_that_always_restarts_and_validates(how):
    docs = list(yaml.safe_load_all(BENTO))
    options = InjectOptions()
    if how == "option":
        options = InjectOptions(native_sidecar=True)
    else:
        docs[1]["spec"]["template"]["metadata"]["annotations"] = {"driftline.io/native-sidecar": "true"}
    out = by_kind(inject_manifests(docs, options))
    for doc in out.values():
        validate(doc)
    spec = out[("Deployment", "fraud-scorer")]["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["bento"]
    [sidecar] = spec["initContainers"]
    assert sidecar["name"] == COLLECTOR and sidecar["restartPolicy"] == "Always"
    assert out[("Service", "fraud-scorer")]["spec"]["ports"][0]["targetPort"] == 8081


def test_a_native_sidecar_goes_after_the_pods_own_init_containers():
    pod_spec = {"initContainers": [{"name": "download-model", "image": "busybox"}],
                "containers": [{"name": "m", "image": "m", "ports": [{"containerPort": 8080}]}]}
    spec = inject_pod_spec(pod_spec, InjectOptions(native_sidecar=True))
    assert [c["name"] for c in spec["initContainers"]] == ["download-model", COLLECTOR]
    assert spec["containers"] == pod_spec["containers"]


def test_a_job_gets_the_native_sidecar_so_that_it_can_complete():
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "score-batch"},
           "spec": {"backoffLimit": 1, "template": {
               "metadata": {"labels": {"app.kubernetes.io/name": "credit-default"}},
               "spec": {"restartPolicy": "Never", "containers": [
                   {"name": "scorer", "image": "example/scorer:1", "ports": [{"containerPort": 8080}]}]}}}}
    [out] = inject_manifests([job], InjectOptions())
    validate(out)
    spec = out["spec"]["template"]["spec"]
    assert len(spec["containers"]) == 1 and spec["initContainers"][0]["restartPolicy"] == "Always"


@pytest.mark.parametrize("kind,api", [("StatefulSet", "apps/v1"), ("DaemonSet", "apps/v1"),
                                      ("ReplicaSet", "apps/v1"), ("Pod", "v1")])
def test_every_workload_kind_is_injected_and_validates(kind, api):
    labels = {"app.kubernetes.io/name": "iris", "app.kubernetes.io/version": "3"}
    pod = {"metadata": {"labels": labels},
           "spec": {"containers": [{"name": "kserve-container", "image": "kserve/sklearnserver:v0.13",
                                    "ports": [{"name": "h2c", "containerPort": 8080}]}]}}
    if kind == "Pod":
        doc = {"apiVersion": api, "kind": kind, "metadata": {"name": "iris", **pod["metadata"]},
               "spec": pod["spec"]}
    else:
        doc = {"apiVersion": api, "kind": kind, "metadata": {"name": "iris"},
               "spec": {"selector": {"matchLabels": labels}, "template": pod}}
        if kind == "StatefulSet":
            doc["spec"]["serviceName"] = "iris"
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "iris"},
               "spec": {"selector": labels, "ports": [{"port": 80, "targetPort": "h2c"}]}}
    out_doc, out_service = inject_manifests([doc, service], InjectOptions())
    validate(out_doc)
    validate(out_service)
    spec = out_doc["spec"] if kind == "Pod" else out_doc["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["kserve-container", COLLECTOR]
    assert out_service["spec"]["ports"] == [{"port": 80, "targetPort": 8081}]


def test_a_kind_list_from_kubectl_get_is_injected_item_by_item():
    docs = list(yaml.safe_load_all(BENTO))
    listing = {"apiVersion": "v1", "kind": "List", "items": docs}
    [out] = inject_manifests([listing], InjectOptions())
    assert out["items"] == inject_manifests(docs, InjectOptions())


def test_annotations_override_the_options_per_pod_and_a_port_given_by_number_finds_its_name():
    docs = list(yaml.safe_load_all(BENTO))
    template = docs[1]["spec"]["template"]
    template["spec"]["containers"][0]["ports"].insert(0, {"name": "grpc", "containerPort": 3001})
    template["metadata"]["annotations"] = {
        "driftline.io/model": "fraud", "driftline.io/kafka": "broker:9093",
        "driftline.io/model-port": "3000", "driftline.io/sample-rate": "0.1",
        "driftline.io/image": "registry.example.com/driftline:0.3.1",
        "prometheus.io/scrape": "true", "prometheus.io/port": "3001"}
    out = by_kind(inject_manifests(docs, InjectOptions()))
    pod = out[("Deployment", "fraud-scorer")]["spec"]["template"]
    collector = collector_of(pod["spec"])
    env = env_of(collector, {**pod["metadata"], "name": "p", "namespace": "models"})
    assert collector["image"] == "registry.example.com/driftline:0.3.1"
    assert env["DRIFTLINE_MODEL"] == "fraud" and env["DRIFTLINE_KAFKA"] == "broker:9093"
    assert env["DRIFTLINE_UPSTREAM"] == "http://127.0.0.1:3000" and env["DRIFTLINE_SAMPLE_RATE"] == "0.1"
    # the model's own scrape settings are kept
    assert pod["metadata"]["annotations"]["prometheus.io/port"] == "3001"
    # targetPort: http is the name of port 3000, the model port
    assert out[("Service", "fraud-scorer")]["spec"]["ports"][0]["targetPort"] == 8081
    validate(out[("Deployment", "fraud-scorer")])


def test_services_of_other_namespaces_or_without_a_selector_are_not_rewired():
    docs = list(yaml.safe_load_all(BENTO))
    other_ns = copy.deepcopy(docs[2])
    other_ns["metadata"]["namespace"] = "staging"
    headless = copy.deepcopy(docs[2])
    headless["metadata"]["name"] = "external"
    del headless["spec"]["selector"]
    out = inject_manifests([docs[1], other_ns, headless], InjectOptions())
    assert out[1:] == [other_ns, headless]


def test_a_workload_that_opts_out_is_left_alone():
    docs = list(yaml.safe_load_all(BENTO))
    docs[1]["metadata"]["annotations"] = {"driftline.io/inject": "false"}
    assert inject_manifests(docs, InjectOptions()) == docs


def test_the_collector_ports_can_be_moved_and_a_clash_is_refused_in_one_line():
    pod_spec = {"containers": [{"name": "m", "image": "m", "ports": [{"containerPort": 8080}]},
                               {"name": "exporter", "image": "e", "ports": [{"containerPort": 9091}]}]}
    with pytest.raises(InputError) as exc:
        inject_pod_spec(pod_spec, InjectOptions())
    assert one_line(exc) == ("port 9091 of the collector is already used by container 'exporter'; "
                             "choose other collector ports")
    spec = inject_pod_spec(pod_spec, InjectOptions(metrics_port=9191, collector_port=8181))
    ports = collector_of(spec)["ports"]
    assert [p["containerPort"] for p in ports] == [8181, 9191]
    with pytest.raises(InputError) as exc:
        inject_pod_spec(pod_spec, InjectOptions(collector_port=8080))
    assert "already used by the model" in one_line(exc)


@pytest.mark.parametrize("pod_spec,message", [
    ({"containers": []}, "the pod has no containers"),
    ({}, "the pod has no containers"),
    ({"containers": [{"name": "m", "image": "m"}]},
     "container 'm' declares no containerPort; "
     "give the model port (driftline.io/model-port or --model-port)"),
])
def test_pods_without_containers_or_a_port_are_refused_in_one_line(pod_spec, message):
    with pytest.raises(InputError) as exc:
        inject_pod_spec(pod_spec, InjectOptions())
    assert one_line(exc) == message


def test_a_pod_without_a_port_is_injected_when_the_port_is_given():
    spec = inject_pod_spec({"containers": [{"name": "m", "image": "m"}]}, InjectOptions(model_port=5000))
    env = {e["name"]: e.get("value") for e in collector_of(spec)["env"]}
    assert env["DRIFTLINE_UPSTREAM"] == "http://127.0.0.1:5000"


def test_a_pod_without_a_model_name_is_refused_naming_the_workload():
    docs = list(yaml.safe_load_all(BENTO))
    del docs[1]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"]
    with pytest.raises(InputError) as exc:
        inject_manifests(docs, InjectOptions())
    assert one_line(exc) == ("Deployment/fraud-scorer: the pod has no label app.kubernetes.io/name; "
                             "label it or set the model name (driftline.io/model or --model)")
    out = inject_manifests(docs, InjectOptions(model="fraud"))
    env = collector_of(out[1]["spec"]["template"]["spec"])["env"]
    assert {"name": "DRIFTLINE_MODEL", "value": "fraud"} in env


@pytest.mark.parametrize("annotation,value", [
    ("driftline.io/model-port", "http"), ("driftline.io/model-port", "70000"),
    ("driftline.io/sample-rate", "1.5"), ("driftline.io/sample-rate", "nan"),
    ("driftline.io/sample-rate", "often"), ("driftline.io/native-sidecar", "maybe"),
    ("driftline.io/model", ""), ("driftline.io/image", " "), ("driftline.io/kafka", ""),
])
def test_an_invalid_annotation_is_refused_naming_it(annotation, value):
    with pytest.raises(InputError) as exc:
        InjectOptions.from_annotations({annotation: value})
    assert annotation in one_line(exc)
    docs = list(yaml.safe_load_all(BENTO))
    docs[1]["spec"]["template"]["metadata"]["annotations"] = {annotation: value}
    with pytest.raises(InputError) as exc:
        inject_manifests(docs, InjectOptions())
    assert one_line(exc).startswith("Deployment/fraud-scorer: annotation " + annotation)


def test_annotations_keep_what_they_do_not_mention():
    base = InjectOptions(image="i:1", kafka="k:1", collector_port=7000, sample_rate=0.5)
    assert InjectOptions.from_annotations({}, base) == base
    assert InjectOptions.from_annotations({"driftline.io/native-sidecar": "true"}, base) == \
        InjectOptions(image="i:1", kafka="k:1", collector_port=7000, sample_rate=0.5, native_sidecar=True)
    assert InjectOptions.from_annotations({"driftline.io/model-port": 8080}).model_port == 8080


@pytest.mark.parametrize("text,message", [
    ("kind: Deployment\nmetadata: {name: x\n", "invalid YAML at line 3, column 1"),
    ("- a\n- b\n", "YAML document 1 is not a mapping"),
    ("apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n",
     "Pod/p: the pod has no containers"),
])
def test_bad_yaml_and_bad_manifests_are_one_line_errors(text, message):
    with pytest.raises(InputError) as exc:
        inject_yaml(text, InjectOptions())
    assert one_line(exc).startswith(message)


@pytest.mark.parametrize("kwargs", [{"collector_port": 0}, {"metrics_port": 8081}, {"sample_rate": 2.0},
                                    {"image": ""}, {"model_port": 65536}, {"cpu_limit": "lots"},
                                    {"cpu_limit": "-1"}, {"cpu_limit": "0m"}])
def test_invalid_options_are_refused_in_one_line(kwargs):
    with pytest.raises(InputError) as exc:
        InjectOptions(**kwargs)
    one_line(exc)


# --- the collector's own settings: --output-names, --feature-names, --protocol -------------------

COLLECTOR_FLAGS = ["--output-names", "fraud_score", "--feature-names", "amount, country,age",
                   "--protocol", "generic", "--generic-instances", "$.rows[*]",
                   "--generic-outputs", "$.scores[*]"]


def injected_env(text: str) -> dict[str, str]:
    """The env of the collector container injected into BENTO's Deployment, as the kubelet sets it."""
    docs = by_kind(list(yaml.safe_load_all(text)))
    validate(docs[("Deployment", "fraud-scorer")])
    template = docs[("Deployment", "fraud-scorer")]["spec"]["template"]
    pod_metadata = {**template["metadata"], "name": "p", "namespace": "models"}
    return env_of(collector_of(template["spec"]), pod_metadata)


def test_inject_sets_output_names_feature_names_and_protocol_as_env_vars_of_the_injected_container(
        tmp_path, capsys):
    from monitor.cli import main as cli

    manifest = tmp_path / "bento.yaml"
    manifest.write_text(BENTO)
    assert cli.main(["inject", "-f", str(manifest), *COLLECTOR_FLAGS]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    env = injected_env(out)
    assert {name: value for name, value in env.items()
            if name in ("DRIFTLINE_OUTPUT_NAMES", "DRIFTLINE_FEATURE_NAMES", "DRIFTLINE_PROTOCOL",
                        "DRIFTLINE_GENERIC_INSTANCES", "DRIFTLINE_GENERIC_INPUTS",
                        "DRIFTLINE_GENERIC_OUTPUTS")} == {
        "DRIFTLINE_OUTPUT_NAMES": "fraud_score", "DRIFTLINE_FEATURE_NAMES": "amount,country,age",
        "DRIFTLINE_PROTOCOL": "generic", "DRIFTLINE_GENERIC_INSTANCES": "$.rows[*]",
        "DRIFTLINE_GENERIC_OUTPUTS": "$.scores[*]"}

    # without the flags the collector keeps its own defaults: none of these variables is set
    assert cli.main(["inject", "-f", str(manifest)]) == 0
    plain = injected_env(capsys.readouterr()[0])
    assert not {"DRIFTLINE_OUTPUT_NAMES", "DRIFTLINE_FEATURE_NAMES", "DRIFTLINE_PROTOCOL"} & plain.keys()

    # one flag alone, as the README's guide uses it
    assert cli.main(["inject", "-f", str(manifest), "--output-names", "delay_score",
                     "--protocol", "kserve_v1"]) == 0
    env = injected_env(capsys.readouterr()[0])
    assert (env["DRIFTLINE_OUTPUT_NAMES"], env["DRIFTLINE_PROTOCOL"]) == ("delay_score", "kserve_v1")
    assert "DRIFTLINE_FEATURE_NAMES" not in env


def test_driftline_collect_reads_the_injected_names_and_protocol_as_its_settings(tmp_path, monkeypatch):
    from monitor.cli import main as cli

    manifest = tmp_path / "bento.yaml"
    manifest.write_text(BENTO)
    out = tmp_path / "out.yaml"
    with out.open("w") as sink:
        monkeypatch.setattr("sys.stdout", sink)
        assert cli.main(["inject", "-f", str(manifest), *COLLECTOR_FLAGS]) == 0
    monkeypatch.undo()
    for name, value in injected_env(out.read_text()).items():
        monkeypatch.setenv(name, value)
    seen = []
    monkeypatch.setattr("collectors.sidecar.run", seen.append)
    assert cli.main(["collect"]) == 0
    [settings] = seen
    assert settings.proxy.output_names == ("fraud_score",)
    assert settings.proxy.feature_names == ("amount", "country", "age")
    assert settings.proxy.protocol == "generic"
    assert (settings.proxy.generic.instances, settings.proxy.generic.outputs) == ("$.rows[*]", "$.scores[*]")


def test_the_webhook_takes_the_same_flags_and_pod_annotations_override_them():
    from monitor.cli import k8s

    webhook = k8s.with_collector_options(k8s.webhook)
    assert {"output_names", "feature_names", "protocol"} <= set(webhook.__annotations__)
    options = InjectOptions(output_names=("score",), protocol="kserve_v1")
    docs = list(yaml.safe_load_all(BENTO))
    docs[1]["spec"]["template"]["metadata"]["annotations"] = {
        "driftline.io/protocol": "oip_v2", "driftline.io/feature-names": "a,b",
        "driftline.io/output-names": "proba"}
    env = injected_env(yaml.safe_dump_all(inject_manifests(docs, options)))
    assert (env["DRIFTLINE_PROTOCOL"], env["DRIFTLINE_FEATURE_NAMES"], env["DRIFTLINE_OUTPUT_NAMES"]) == \
        ("oip_v2", "a,b", "proba")
    env = injected_env(yaml.safe_dump_all(inject_manifests(list(yaml.safe_load_all(BENTO)), options)))
    assert (env["DRIFTLINE_PROTOCOL"], env["DRIFTLINE_OUTPUT_NAMES"]) == ("kserve_v1", "score")


@pytest.mark.parametrize(("flags", "message"), [
    (["--protocol", "grpc"],
     "--protocol must be auto or one of kserve_v1, oip_v2, mlflow, generic; got 'grpc'"),
    (["--protocol", "generic"], "--protocol generic needs --generic-instances and --generic-outputs"),
    (["--generic-instances", "$.rows"], "give --generic-instances and --generic-outputs together"),
    (["--generic-instances", "[[", "--generic-outputs", "$.y"], "a generic JSONPath: instances '[['"),
    (["--output-names", " , "], "--output-names needs comma-separated names; got ' , '"),
    (["--feature-names", ","], "--feature-names needs comma-separated names; got ','"),
    (["--model", "m", "--model-from-path"], "give --model or --model-from-path, not both"),
    (["--model-map", "sum"], "--model-map entries are served=configured; got 'sum'"),
    (["--model-map", "a=b,a=c"], "--model-map names 'a' twice"),
    (["--model-map", ","], "--model-map must be served=configured,...; got ','"),
])
def test_bad_collector_flags_are_one_line_errors_and_exit_2(flags, message, tmp_path, capsys):
    from monitor.cli import main as cli

    manifest = tmp_path / "bento.yaml"
    manifest.write_text(BENTO)
    assert cli.main(["inject", "-f", str(manifest), *flags]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith(f"driftline: error: {message}"), err


@pytest.mark.parametrize(("annotation", "value"), [
    ("driftline.io/protocol", "grpc"), ("driftline.io/protocol", "generic"),
    ("driftline.io/feature-names", "a,,b"), ("driftline.io/generic-outputs", "$.y"),
])
def test_an_invalid_protocol_or_names_annotation_is_refused_naming_it(annotation, value):
    with pytest.raises(InputError) as exc:
        InjectOptions.from_annotations({annotation: value})
    assert one_line(exc).startswith(f"annotation {annotation}")


# --- a server of several models: --model-from-path, --model-map (issue 15) ------------------------


def test_a_multi_model_server_is_injected_without_a_model_so_each_call_is_keyed_by_its_path(
        tmp_path, monkeypatch, capsys):
    from monitor.cli import main as cli

    manifest = tmp_path / "bento.yaml"
    manifest.write_text(BENTO)
    assert cli.main(["inject", "-f", str(manifest), "--model-from-path",
                     "--model-map", "sum=adder, multi=multiplier"]) == 0
    out, err = capsys.readouterr()
    assert err == ""
    env = injected_env(out)
    assert "DRIFTLINE_MODEL" not in env and "DRIFTLINE_MODEL_VERSION" not in env
    assert env["DRIFTLINE_MODEL_MAP"] == "sum=adder, multi=multiplier"
    # driftline collect, started with that env, takes the model from each path, renamed by the map
    for name in [n for n in os.environ if n.startswith("DRIFTLINE_")]:
        monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    seen = []
    monkeypatch.setattr("collectors.sidecar.run", seen.append)
    assert cli.main(["collect"]) == 0
    [settings] = seen
    assert settings.proxy.model is None
    assert settings.proxy.model_map == {"sum": "adder", "multi": "multiplier"}
    # with neither flag, the pod's name label keys every call, as before
    assert cli.main(["inject", "-f", str(manifest)]) == 0
    plain = injected_env(capsys.readouterr()[0])
    assert plain["DRIFTLINE_MODEL"] == "fraud-scorer" and "DRIFTLINE_MODEL_MAP" not in plain


def test_pod_annotations_choose_between_a_model_name_and_the_path_per_pod():
    docs = list(yaml.safe_load_all(BENTO))
    docs[1]["spec"]["template"]["metadata"]["annotations"] = {
        "driftline.io/model-from-path": "true", "driftline.io/model-map": "sum=adder"}
    env = injected_env(yaml.safe_dump_all(inject_manifests(docs, InjectOptions(model="m"))))
    assert "DRIFTLINE_MODEL" not in env and env["DRIFTLINE_MODEL_MAP"] == "sum=adder"
    # a pod that names its model wins over --model-from-path
    docs = list(yaml.safe_load_all(BENTO))
    docs[1]["spec"]["template"]["metadata"]["annotations"] = {"driftline.io/model": "named"}
    env = injected_env(yaml.safe_dump_all(inject_manifests(docs, InjectOptions(model_from_path=True))))
    assert env["DRIFTLINE_MODEL"] == "named"


@pytest.mark.parametrize(("annotations", "named"), [
    ({"driftline.io/model-map": "x"}, "driftline.io/model-map"),
    ({"driftline.io/model-from-path": "maybe"}, "driftline.io/model-from-path"),
    ({"driftline.io/model-from-path": "true", "driftline.io/model": "m"}, "driftline.io/model"),
])
def test_an_invalid_model_annotation_is_refused_naming_it(annotations, named):
    with pytest.raises(InputError) as exc:
        InjectOptions.from_annotations(annotations)
    assert named in one_line(exc)
