"""One entry point: raw bodies of one model-server call in, the protocol and its instances out.

:func:`extract` parses both bodies with ``msgspec.json.decode`` (a body that
is not JSON is ``not_json``; an empty response body means no response and
leaves the outputs empty), picks the protocol and runs its extractor.  A body
with an ``Inference-Header-Content-Length`` is JSON up to that length and
binary tensors after it (:mod:`collectors.extractors.binary`); a request whose
``Content-Type`` is CSV is MLflow's (:func:`collectors.extractors.mlflow.csv_request`).

``protocol="auto"`` picks, in this order:

1. by URL path: ``/v2/models/<m>[/versions/<v>]/infer`` is ``oip_v2``, a path
   ending in ``:predict`` is ``kserve_v1``, one ending in ``/invocations`` is
   ``mlflow`` (query strings, trailing slashes and percent-encoding ignored;
   any prefix before the route is allowed);
2. the ``generic`` spec, when one is given and its ``instances`` expression
   matches the request (a spec is given for exactly the servers that speak
   none of the known protocols, so it goes before guessing by shape);
3. by request shape: ``inputs`` as a list of objects with ``name``, ``shape``
   and ``datatype`` is ``oip_v2``; ``dataframe_split`` or
   ``dataframe_records`` is ``mlflow``; ``instances``, or ``inputs`` as a
   list, is ``kserve_v1``; ``inputs`` as an object (TF-serving columns) is
   ``mlflow``.

Otherwise the request is ``unknown_shape``.  A named protocol is used as
given, whatever the path.  A request with a CSV ``Content-Type`` is MLflow's
(with ``protocol`` auto or ``mlflow``).  A body with an
``Inference-Header-Content-Length`` is cut there: JSON before, the binary
tensors of the Open Inference Protocol after.

Values are kept only when they are JSON scalars (str, int, float, bool,
None); a nested value (a list or object inside one feature, a sub-tensor) is
stored as its compact, key-sorted JSON text.  When the response holds a
batch of predictions it must have one per request instance (``mismatch``
otherwise), and predictions pair with instances by position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from collectors.extractors.base import ExtractError, Extraction, Extractor, describe, name_outputs, route_path
from collectors.extractors.binary import attach, header_length, split_body
from collectors.extractors.generic import CompiledSpec, Generic, GenericSpec, compile_spec
from collectors.extractors.kserve_v1 import KServeV1
from collectors.extractors.mlflow import MLflow, csv_request, is_csv
from collectors.extractors.oip_v2 import OipV2
from monitor.errors import UsageError

PROTOCOLS: tuple[str, ...] = ("kserve_v1", "oip_v2", "mlflow", "generic")
AUTO = "auto"


def _decode(body: bytes, what: str) -> Any:
    try:
        return msgspec.json.decode(body)
    except msgspec.MsgspecError as exc:
        raise ExtractError("not_json", f"the {what} body is not JSON ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise ExtractError("not_json", f"the {what} body is nested too deeply to parse") from None


def _is_v2_tensor(value: Any) -> bool:
    return isinstance(value, dict) and "name" in value and "shape" in value and "datatype" in value


def by_shape(request: Any) -> str | None:
    """The protocol a request body looks like, or ``None`` (rule 3 of the module doc)."""
    if not isinstance(request, dict):
        return None
    inputs = request.get("inputs")
    if isinstance(inputs, list) and inputs and all(_is_v2_tensor(t) for t in inputs):
        return "oip_v2"
    if "dataframe_split" in request or "dataframe_records" in request:
        return "mlflow"
    if "instances" in request or isinstance(inputs, list):
        return "kserve_v1"
    if isinstance(inputs, dict):
        return "mlflow"
    return None


def _extractors(feature_names: Sequence[str] | None) -> dict[str, Extractor]:
    return {"oip_v2": OipV2(feature_names), "kserve_v1": KServeV1(feature_names),
            "mlflow": MLflow(feature_names)}


def _request_rows(chosen: Extractor, request: Any) -> int | None:
    """The rows of a request read alone (no answer), or None when the request cannot be read either."""
    try:
        return len(chosen.extract(request, None))
    except ExtractError:
        return None


def extract(path: str, request_body: bytes, response_body: bytes, *, protocol: str = AUTO,
            generic: GenericSpec | CompiledSpec | None = None,
            feature_names: Sequence[str] | None = None,
            output_names: Sequence[str] | None = None,
            request_content_type: str | None = None,
            request_header_length: int | str | bytes | None = None,
            response_header_length: int | str | bytes | None = None) -> tuple[str, Extraction]:
    """The protocol used and the instances of one call (see the module doc for the rules).

    ``generic`` describes a server of no known protocol (required with
    ``protocol="generic"``); a :class:`GenericSpec` is compiled once and
    cached.  ``feature_names`` names the values of instances given as lists
    (and the columns of a single OIP v2 input tensor); ``output_names`` names
    positional predictions (:func:`~collectors.extractors.base.name_outputs`).
    ``request_content_type`` is the request's ``Content-Type``: CSV is read as
    MLflow reads it (:func:`~collectors.extractors.mlflow.csv_request`).
    ``request_header_length`` and ``response_header_length`` are the bodies'
    ``Inference-Header-Content-Length``: the body is a JSON header of that many
    bytes followed by binary tensors (:mod:`collectors.extractors.binary`).  Raises
    :class:`ExtractError` for a payload, :class:`monitor.errors.UsageError`
    for arguments that do not fit together.
    """
    if protocol != AUTO and protocol not in PROTOCOLS:
        raise UsageError(f"unknown protocol {protocol!r}; expected auto or one of {', '.join(PROTOCOLS)}")
    for what, given in (("feature_names", feature_names), ("output_names", output_names)):
        if isinstance(given, str):
            raise UsageError(f"{what} must be a sequence of names, not one string")
    names = None if feature_names is None else tuple(feature_names)
    compiled = compile_spec(generic) if isinstance(generic, GenericSpec) else generic
    if protocol == "generic" and compiled is None:
        raise UsageError("protocol 'generic' needs a generic spec")

    csv = is_csv(request_content_type) and protocol in (AUTO, "mlflow")
    if csv:
        request = csv_request(request_body)
    else:
        head, tail = split_body(request_body, header_length(request_header_length, request_body, "request"))
        request = _decode(head, "request")
        if tail is not None:
            attach(request, "inputs", tail, "request")
    known = _extractors(names)
    custom = None if compiled is None else Generic(compiled, names)
    chosen: Extractor | None
    if csv:
        chosen = known["mlflow"]
    elif protocol == "generic":
        chosen = custom
    elif protocol != AUTO:
        chosen = known[protocol]
    else:
        chosen = next((e for e in known.values() if e.matches(path, request)), None)
        if chosen is None and custom is not None and custom.matches(path, request):
            chosen = custom
        if chosen is None:
            guess = by_shape(request)
            chosen = None if guess is None else known[guess]
    if chosen is None:
        raise ExtractError("unknown_shape", f"cannot tell the protocol of a request to {route_path(path)!r}: "
                                            f"the body is {describe(request)}")
    try:
        length = header_length(response_header_length, response_body, "response")
        head, tail = split_body(response_body, length)
        response = _decode(head, "response") if head and not head.isspace() else None
        if tail is not None:
            attach(response, "outputs", tail, "response")
        instances = chosen.extract(request, response)
        if output_names:
            instances = name_outputs(instances, output_names)
    except ExtractError as exc:
        exc.rows = _request_rows(chosen, request)
        raise
    return chosen.name, instances
