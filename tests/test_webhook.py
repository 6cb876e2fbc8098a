"""``collectors.k8s.webhook``: AdmissionReviews as the API server sends them, answered with a JSONPatch that
an independent implementation (the ``jsonpatch`` package) applies to the same pod ``driftline inject``
produces; the webhook over real TLS; and the ``k8s/webhook`` manifests, rendered by kustomize and
validated against the Kubernetes schemas."""

from __future__ import annotations

import asyncio
import base64
import copy
import datetime
import ipaddress
import json
import os
import shutil
import ssl
import subprocess
from pathlib import Path
from typing import Any

import aiohttp
import jsonpatch
import kubernetes_validate
import pytest
import yaml
from aiohttp.test_utils import TestServer
from hypothesis import given, settings
from hypothesis import strategies as st

from collectors.k8s.inject import COLLECTOR, InjectOptions, inject_pod_spec, inject_pod_template
from collectors.k8s.webhook import json_patch, review_response, run_webhook, serve_webhook, webhook_app
from monitor.errors import InputError, UsageError
from tests.servers import free_port

ROOT = Path(__file__).resolve().parent.parent
K8S = "1.30"

# What kube-apiserver POSTs for a pod the ReplicaSet controller creates: defaults applied, the
# service-account token volume and default tolerations already added, no name yet (generateName).
REVIEW = r"""
{
  "kind": "AdmissionReview",
  "apiVersion": "admission.k8s.io/v1",
  "request": {
    "uid": "8f6c1c2e-3b1d-4c55-9a52-6d0c2b8a7e41",
    "kind": {"group": "", "version": "v1", "kind": "Pod"},
    "resource": {"group": "", "version": "v1", "resource": "pods"},
    "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
    "requestResource": {"group": "", "version": "v1", "resource": "pods"},
    "namespace": "models",
    "operation": "CREATE",
    "userInfo": {
      "username": "system:serviceaccount:kube-system:replicaset-controller",
      "uid": "2b9d4a4e-0f57-4b2e-8d87-1f3c2f0a9c11",
      "groups": ["system:serviceaccounts", "system:serviceaccounts:kube-system", "system:authenticated"]
    },
    "object": {
      "kind": "Pod",
      "apiVersion": "v1",
      "metadata": {
        "generateName": "fraud-scorer-5d9c7b8f4-",
        "namespace": "models",
        "creationTimestamp": null,
        "labels": {
          "app.kubernetes.io/name": "fraud-scorer",
          "app.kubernetes.io/version": "v7",
          "pod-template-hash": "5d9c7b8f4"
        },
        "annotations": {"driftline.io/inject": "true"},
        "ownerReferences": [{
          "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "fraud-scorer-5d9c7b8f4",
          "uid": "c3b1e0a2-8c1f-4d8e-b7a5-0e4f2d9c6b13", "controller": true, "blockOwnerDeletion": true
        }],
        "managedFields": [{
          "manager": "kube-controller-manager", "operation": "Update", "apiVersion": "v1",
          "time": "2026-03-02T10:15:04Z", "fieldsType": "FieldsV1",
          "fieldsV1": {"f:metadata": {"f:generateName": {}, "f:labels": {".": {}}}}
        }]
      },
      "spec": {
        "volumes": [
          {"name": "config", "configMap": {"name": "fraud-scorer-bentoml", "defaultMode": 420}},
          {"name": "kube-api-access-7xq2m", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
              "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}
        ],
        "containers": [{
          "name": "bento",
          "image": "registry.example.com/ml/fraud_scorer:7f3kq2hv5cbyzrgs",
          "args": ["serve", "--port", "3000"],
          "ports": [{"name": "http", "containerPort": 3000, "protocol": "TCP"}],
          "env": [{"name": "BENTOML_CONFIG", "value": "/etc/bentoml/config.yaml"}],
          "resources": {"limits": {"cpu": "2", "memory": "2Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}},
          "volumeMounts": [
            {"name": "config", "readOnly": true, "mountPath": "/etc/bentoml"},
            {"name": "kube-api-access-7xq2m", "readOnly": true,
             "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}
          ],
          "livenessProbe": {"httpGet": {"path": "/livez", "port": "http", "scheme": "HTTP"},
                            "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1,
                            "failureThreshold": 3},
          "readinessProbe": {"httpGet": {"path": "/readyz", "port": "http", "scheme": "HTTP"},
                             "initialDelaySeconds": 5, "timeoutSeconds": 1, "periodSeconds": 5,
                             "successThreshold": 1, "failureThreshold": 3},
          "terminationMessagePath": "/dev/termination-log",
          "terminationMessagePolicy": "File",
          "imagePullPolicy": "IfNotPresent"
        }],
        "restartPolicy": "Always",
        "terminationGracePeriodSeconds": 30,
        "dnsPolicy": "ClusterFirst",
        "serviceAccountName": "fraud-scorer",
        "serviceAccount": "fraud-scorer",
        "securityContext": {"runAsUser": 1034, "runAsNonRoot": true, "fsGroup": 1034},
        "schedulerName": "default-scheduler",
        "tolerations": [
          {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 300},
          {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
           "tolerationSeconds": 300}
        ],
        "priority": 0,
        "enableServiceLinks": true,
        "preemptionPolicy": "PreemptLowerPriority"
      },
      "status": {}
    },
    "oldObject": null,
    "dryRun": false,
    "options": {"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}
  }
}
"""


def review(**changes: Any) -> dict[str, Any]:
    """The review above, with ``changes`` applied as {"a/b/c": value} (None deletes)."""
    doc = json.loads(REVIEW)
    for path, value in changes.items():
        *parents, last = path.split("/")
        node = doc
        for key in parents:
            node = node[key]
        if value is None:
            del node[last]
        else:
            node[last] = value
    return doc


def post(body: bytes | str | dict[str, Any], options: InjectOptions | None = None,
         path: str = "/mutate", method: str = "POST") -> tuple[int, str, str]:
    """(status, content type, body) of one request to the webhook app over HTTP."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body

    async def main() -> tuple[int, str, str]:
        server = TestServer(webhook_app(options or InjectOptions()))
        await server.start_server()
        try:
            async with aiohttp.ClientSession() as session, \
                    session.request(method, str(server.make_url(path)), data=data,
                                    headers={"Content-Type": "application/json"}) as response:
                return response.status, response.content_type, await response.text()
        finally:
            await server.close()

    return asyncio.run(asyncio.wait_for(main(), 30))


def patch_of(answer: dict[str, Any]) -> list[dict[str, Any]]:
    response = answer["response"]
    assert response["patchType"] == "JSONPatch"
    patch: list[dict[str, Any]] = json.loads(base64.b64decode(response["patch"], validate=True))
    return patch


def validate(doc: dict[str, Any]) -> None:
    kubernetes_validate.validate(doc, K8S, strict=True)


# --- the review, over HTTP --------------------------------------------------------------------------

def test_the_pod_as_the_api_server_sends_it_validates_so_the_checks_below_mean_something():
    validate(review()["request"]["object"])


@pytest.mark.parametrize("native", [False, True])
def test_the_patch_applied_by_jsonpatch_gives_the_pod_inject_pod_spec_gives_and_it_validates(native):
    options = InjectOptions(native_sidecar=native)
    sent = review()
    status, content_type, text = post(sent, options)
    assert (status, content_type) == (200, "application/json")
    answer = json.loads(text)
    assert answer["apiVersion"] == "admission.k8s.io/v1" and answer["kind"] == "AdmissionReview"
    assert answer["response"]["uid"] == sent["request"]["uid"]
    assert answer["response"]["allowed"] is True and "warnings" not in answer["response"]
    pod = sent["request"]["object"]
    patched = jsonpatch.apply_patch(pod, patch_of(answer))
    assert patched["spec"] == inject_pod_spec(pod["spec"], options)
    assert patched == inject_pod_template(pod, options)
    assert patched["metadata"]["annotations"] == {
        "driftline.io/inject": "true", "prometheus.io/scrape": "true", "prometheus.io/port": "9091",
        "prometheus.io/path": "/metrics"}
    assert patched["spec"]["containers"][0] == pod["spec"]["containers"][0]
    validate(patched)
    # additive: nothing the API server sent is removed or replaced
    assert {op["op"] for op in patch_of(answer)} == {"add"}


def test_a_patched_pod_sent_again_gets_no_patch():
    sent = review()
    answer = json.loads(post(sent)[2])
    sent["request"]["object"] = jsonpatch.apply_patch(sent["request"]["object"], patch_of(answer))
    status, _, text = post(sent)
    assert status == 200
    assert json.loads(text)["response"] == {"uid": sent["request"]["uid"], "allowed": True}


def test_the_pods_annotations_override_the_webhooks_options():
    annotations = {"driftline.io/inject": "true", "driftline.io/model": "fraud",
                   "driftline.io/sample-rate": "0.5", "driftline.io/native-sidecar": "true"}
    sent = review(**{"request/object/metadata/annotations": annotations})
    answer = json.loads(post(sent, InjectOptions(kafka="kafka.prod:9092"))[2])
    patched = jsonpatch.apply_patch(sent["request"]["object"], patch_of(answer))
    [collector] = patched["spec"]["initContainers"]
    env = {e["name"]: e.get("value") for e in collector["env"]}
    assert env["DRIFTLINE_MODEL"] == "fraud" and env["DRIFTLINE_SAMPLE_RATE"] == "0.5"
    assert env["DRIFTLINE_KAFKA"] == "kafka.prod:9092"
    validate(patched)


@pytest.mark.parametrize("changes", [
    {"request/object/metadata/annotations": None},
    {"request/object/metadata/annotations": {"driftline.io/inject": "false"}},
    {"request/operation": "UPDATE", "request/oldObject": {}},
    {"request/kind": {"group": "apps", "version": "v1", "kind": "Deployment"}},
    {"request/subResource": "ephemeralcontainers"},
])
def test_pods_not_annotated_and_other_requests_are_allowed_without_a_patch(changes):
    sent = review(**changes)
    status, _, text = post(sent)
    assert status == 200
    assert json.loads(text) == {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
                                "response": {"uid": sent["request"]["uid"], "allowed": True}}


@pytest.mark.parametrize("changes,warning", [
    ({"request/object/metadata/annotations": {"driftline.io/inject": "true",
                                              "driftline.io/sample-rate": "lots"}},
     "driftline: collector not injected: annotation driftline.io/sample-rate must be a number between "
     "0 and 1; got 'lots'"),
    ({"request/object/metadata/labels": {"pod-template-hash": "5d9c7b8f4"}},
     "driftline: collector not injected: the pod has no label app.kubernetes.io/name; label it or set "
     "the model name (driftline.io/model or --model)"),
])
def test_a_pod_that_cannot_be_injected_is_allowed_unchanged_with_a_warning(changes, warning):
    sent = review(**changes)
    status, _, text = post(sent)
    assert status == 200
    assert json.loads(text)["response"] == {"uid": sent["request"]["uid"], "allowed": True,
                                            "warnings": [warning]}


@pytest.mark.parametrize("body,message", [
    (b"", "the body is not JSON"),
    (b"{\"kind\": ", "the body is not JSON"),
    (b"\xff\xfe\x00", "the body is not JSON"),
    (b"[" * 100_000, "the body is not JSON"),
    (b"[1, 2]", "the body is not a JSON object"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1beta1", "request": {}},
     "expected apiVersion admission.k8s.io/v1 and kind AdmissionReview; got 'admission.k8s.io/v1beta1' "
     "'AdmissionReview'"),
    ({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"}, "the AdmissionReview has no request"),
    (review(**{"request/uid": None}), "request.uid is missing"),
    (review(**{"request/object": None}), "request.object is not a Pod"),
    (review(**{"request/object": {"kind": "Pod"}}), "request.object is not a Pod"),
])
def test_a_malformed_review_is_a_400_with_one_line(body, message):
    status, content_type, text = post(body)
    assert (status, content_type) == (400, "text/plain")
    assert text == f"malformed AdmissionReview: {message}\n"


def test_an_unexpected_failure_allows_the_pod_unchanged(monkeypatch):
    def boom(*_: Any) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr("collectors.k8s.webhook.inject_pod_template", boom)
    sent = review()
    status, _, text = post(sent)
    assert status == 200
    assert json.loads(text)["response"] == {
        "uid": sent["request"]["uid"], "allowed": True,
        "warnings": ["driftline: collector not injected: internal error RuntimeError"]}


def test_healthz_answers_and_other_methods_are_refused():
    assert post(b"", path="/healthz", method="GET")[:2] == (200, "application/json")
    assert post(b"", path="/mutate", method="GET")[0] == 405


def test_review_response_is_the_same_function_without_http():
    sent = review()
    assert json.loads(post(sent)[2]) == review_response(sent, InjectOptions())


# --- the patch generator ----------------------------------------------------------------------------

def test_a_patch_escapes_keys_with_slashes_and_tildes():
    old = {"metadata": {"annotations": {"a/b": "1"}}}
    new = {"metadata": {"annotations": {"a/b": "2", "c~d": "3"}}}
    assert json_patch(old, new) == [
        {"op": "replace", "path": "/metadata/annotations/a~1b", "value": "2"},
        {"op": "add", "path": "/metadata/annotations/c~0d", "value": "3"}]
    assert json_patch([1, 2], [1, 2, 3]) == [{"op": "add", "path": "/2", "value": 3}]
    assert json_patch({"x": 1}, {"x": True}) == [{"op": "replace", "path": "/x", "value": True}]
    assert json_patch({"x": [1]}, {"x": [1]}) == []


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.text(max_size=3),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from(["a", "b", "c/d", "e~f", "", "0"]), children, max_size=4),
    max_leaves=20)


@settings(max_examples=300, deadline=None)
@given(old=_json, new=_json)
def test_any_patch_turns_the_old_document_into_the_new_one(old, new):
    patch = json_patch(old, new)
    assert jsonpatch.apply_patch(copy.deepcopy(old), patch) == new
    assert json.loads(json.dumps(patch)) == patch


@settings(max_examples=100, deadline=None)
@given(old=_json, extra=st.lists(_json, max_size=3))
def test_appending_to_a_list_only_adds(old, extra):
    before = {"list": [old]}
    after = {"list": [old, *extra]}
    assert all(op["op"] == "add" for op in json_patch(before, after))


# --- over TLS ---------------------------------------------------------------------------------------

def make_certificate(directory: Path, name: str) -> tuple[Path, Path, Path]:
    """(CA certificate, server certificate, server key) for 127.0.0.1 and localhost."""
    directory.mkdir(parents=True, exist_ok=True)
    ca_path, cert_path, key_path = (directory / f"{name}-{p}" for p in ("ca.crt", "tls.crt", "tls.key"))
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            pytest.skip("neither the cryptography package nor openssl is available")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key_path), "-out", str(cert_path), "-days", "1",
                        "-subj", f"/CN={name}", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                       check=True, capture_output=True, timeout=60)
        shutil.copy(cert_path, ca_path)
        return ca_path, cert_path, key_path
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name)
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "driftline-webhook")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return ca_path, cert_path, key_path


def test_the_webhook_answers_over_tls_to_a_client_that_trusts_its_ca(tmp_path):
    ca, cert, key = make_certificate(tmp_path, "first")
    port = free_port()
    sent = review()

    async def main() -> tuple[dict[str, Any], str]:
        stop, started = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve_webhook("127.0.0.1", port, str(cert), str(key), InjectOptions(),
                                                   stop=stop, started=started))
        await asyncio.wait_for(started.wait(), 10)
        try:
            client = ssl.create_default_context(cafile=str(ca))
            async with aiohttp.ClientSession() as session:
                async with session.post(f"https://127.0.0.1:{port}/mutate", json=sent, ssl=client) as resp:
                    assert resp.status == 200
                    answer = await resp.json()
                async with session.get(f"https://localhost:{port}/healthz", ssl=client) as resp:
                    assert resp.status == 200
                with pytest.raises(aiohttp.ClientConnectorCertificateError):  # no trust, no answer
                    await session.get(f"https://127.0.0.1:{port}/healthz",
                                      ssl=ssl.create_default_context())
                version = ""
                reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client)
                version = str(writer.get_extra_info("ssl_object").version())
                writer.close()
                await writer.wait_closed()
                del reader
            return answer, version
        finally:
            stop.set()
            await asyncio.wait_for(server, 10)

    answer, version = asyncio.run(asyncio.wait_for(main(), 60))
    assert answer["response"]["uid"] == sent["request"]["uid"]
    patched = jsonpatch.apply_patch(sent["request"]["object"], patch_of(answer))
    assert [c["name"] for c in patched["spec"]["containers"]] == ["bento", COLLECTOR]
    assert version in ("TLSv1.2", "TLSv1.3")


def test_a_renewed_certificate_is_served_without_a_restart(tmp_path):
    old_ca, cert, key = make_certificate(tmp_path / "old", "old")
    new_ca, new_cert, new_key = make_certificate(tmp_path / "new", "new")
    port = free_port()

    async def get(ca: Path) -> int:
        async with aiohttp.ClientSession() as session, \
                session.get(f"https://127.0.0.1:{port}/healthz",
                            ssl=ssl.create_default_context(cafile=str(ca))) as resp:
            return resp.status

    async def main() -> None:
        stop, started = asyncio.Event(), asyncio.Event()
        server = asyncio.create_task(serve_webhook("127.0.0.1", port, str(cert), str(key), InjectOptions(),
                                                   stop=stop, started=started, reload_interval_s=0.05))
        await asyncio.wait_for(started.wait(), 10)
        try:
            assert await get(old_ca) == 200
            # as the kubelet updates a Secret volume: both files change together
            for source, target in ((new_key, key), (new_cert, cert)):
                os.replace(source, target)
            for _ in range(200):
                try:
                    if await get(new_ca) == 200:
                        break
                except aiohttp.ClientConnectorCertificateError:
                    await asyncio.sleep(0.05)
            else:
                pytest.fail("the new certificate was never served")
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await get(old_ca)
        finally:
            stop.set()
            await asyncio.wait_for(server, 10)

    asyncio.run(asyncio.wait_for(main(), 60))


def test_run_webhook_refuses_a_bad_listen_address_or_certificate_in_one_line(tmp_path):
    with pytest.raises(UsageError) as exc:
        run_webhook("8443", "c", "k", InjectOptions())
    assert str(exc.value) == "--listen must be HOST:PORT, e.g. 0.0.0.0:8443; got '8443'"
    with pytest.raises(InputError) as exc:
        run_webhook("127.0.0.1:0", str(tmp_path / "tls.crt"), str(tmp_path / "tls.key"), InjectOptions())
    message = str(exc.value)
    assert "\n" not in message and message.startswith(f"cannot load the TLS certificate {tmp_path}/tls.crt")
    _, cert, _ = make_certificate(tmp_path, "x")
    with pytest.raises(InputError):
        run_webhook("127.0.0.1:0", str(cert), str(cert), InjectOptions())  # a certificate is not a key


# --- the manifests ----------------------------------------------------------------------------------

CERT_MANAGER = "cert-manager.io/v1"


@pytest.fixture(scope="module")
def rendered() -> dict[tuple[str, str], dict[str, Any]]:
    if shutil.which("kubectl") is None:
        pytest.skip("kubectl is not installed")
    text = subprocess.run(["kubectl", "kustomize", str(ROOT / "k8s/webhook")], capture_output=True,
                          text=True, timeout=60, check=True).stdout
    return {(d["kind"], d["metadata"]["name"]): d for d in yaml.safe_load_all(text)}


def test_every_rendered_kubernetes_object_validates(rendered):
    assert sorted(rendered) == [("Certificate", "driftline-webhook"), ("Deployment", "driftline-webhook"),
                                ("Issuer", "driftline-webhook-selfsigned"),
                                ("MutatingWebhookConfiguration", "driftline-collector-injector"),
                                ("Service", "driftline-webhook")]
    for doc in rendered.values():
        if doc["apiVersion"] != CERT_MANAGER:  # CRDs: checked by hand below
            validate(doc)
        assert doc["metadata"]["labels"]["app.kubernetes.io/part-of"] == "driftline"


def test_the_deployment_runs_the_webhook_with_the_certificates_secret_behind_the_service(rendered):
    deployment = rendered[("Deployment", "driftline-webhook")]
    service = rendered[("Service", "driftline-webhook")]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert container["args"] == ["webhook", "--listen", "0.0.0.0:8443",
                                 "--tls-cert", "/tls/tls.crt", "--tls-key", "/tls/tls.key"]
    [mount] = container["volumeMounts"]
    [volume] = pod["volumes"]
    assert mount == {"name": volume["name"], "mountPath": "/tls", "readOnly": True}
    certificate = rendered[("Certificate", "driftline-webhook")]
    assert volume["secret"]["secretName"] == certificate["spec"]["secretName"]
    [port] = container["ports"]
    assert port["containerPort"] == 8443
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": port["name"], "scheme": "HTTPS"}
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    assert service["metadata"]["namespace"] == deployment["metadata"]["namespace"] == "driftline"
    [service_port] = service["spec"]["ports"]
    assert service_port["targetPort"] == port["name"]


def test_the_webhook_configuration_is_safe_and_points_at_the_service(rendered):
    config = rendered[("MutatingWebhookConfiguration", "driftline-collector-injector")]
    service = rendered[("Service", "driftline-webhook")]
    certificate = rendered[("Certificate", "driftline-webhook")]
    assert "namespace" not in config["metadata"]  # cluster-scoped
    assert config["metadata"]["annotations"]["cert-manager.io/inject-ca-from"] == \
        f"{certificate['metadata']['namespace']}/{certificate['metadata']['name']}"
    [hook] = config["webhooks"]
    assert hook["failurePolicy"] == "Ignore" and hook["sideEffects"] == "None"
    assert hook["admissionReviewVersions"] == ["v1"] and hook["reinvocationPolicy"] == "Never"
    assert hook["timeoutSeconds"] == 5
    assert hook["namespaceSelector"] == {"matchLabels": {"driftline.io/inject": "enabled"}}
    assert hook["rules"] == [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"],
                              "resources": ["pods"], "scope": "Namespaced"}]
    assert hook["clientConfig"]["service"] == {
        "name": service["metadata"]["name"], "namespace": service["metadata"]["namespace"],
        "path": "/mutate", "port": service["spec"]["ports"][0]["port"]}
    assert "caBundle" not in hook["clientConfig"]  # cert-manager's CA injector fills it


def test_the_cert_manager_objects_have_what_cert_manager_requires(rendered):
    issuer = rendered[("Issuer", "driftline-webhook-selfsigned")]
    certificate = rendered[("Certificate", "driftline-webhook")]
    service = rendered[("Service", "driftline-webhook")]
    assert issuer["apiVersion"] == certificate["apiVersion"] == CERT_MANAGER
    assert issuer["spec"] == {"selfSigned": {}}
    assert issuer["metadata"]["namespace"] == certificate["metadata"]["namespace"] == "driftline"
    spec = certificate["spec"]
    assert spec["issuerRef"] == {"name": issuer["metadata"]["name"], "kind": "Issuer",
                                 "group": "cert-manager.io"}
    assert isinstance(spec["secretName"], str) and spec["secretName"]
    # the API server calls https://<service>.<namespace>.svc
    assert f"{service['metadata']['name']}.{service['metadata']['namespace']}.svc" in spec["dnsNames"]
    assert "server auth" in spec["usages"]
    assert spec["privateKey"]["algorithm"] in ("RSA", "ECDSA", "Ed25519")
    assert set(spec) <= {"secretName", "commonName", "dnsNames", "duration", "renewBefore", "privateKey",
                         "usages", "issuerRef", "ipAddresses", "uris", "subject", "secretTemplate"}
