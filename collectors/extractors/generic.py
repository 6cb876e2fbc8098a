"""Any JSON model server, described by JSONPath expressions (jsonpath-ng, extended syntax).

A :class:`GenericSpec` holds four expressions; :func:`compile_spec` parses
them once (and caches the result per spec).

``instances`` (required)
    Evaluated on the request body.  Every match is one instance, in document
    order.  ``$.data[*]`` selects each element of ``data``; ``$`` makes the
    whole body one instance.  No match is ``unknown_shape``.
``inputs`` (optional)
    Evaluated on each instance matched above, which is its root ``$``
    (``$.features`` and ``features`` mean the same).  Without it the instance
    itself is the feature mapping.
``outputs`` (required)
    Without ``output_instances``: evaluated on the response body, and its
    i-th match is the prediction of the i-th instance (so the number of
    matches must equal the number of instances, else ``mismatch``), e.g.
    ``$.result[*].score``.  With ``output_instances``: evaluated on each
    per-instance response object instead, like ``inputs``.
``output_instances`` (optional)
    Evaluated on the response body; its i-th match is the response object
    of the i-th instance (count must agree, else ``mismatch``).

How matches become names and values (values follow the rules of
:mod:`collectors.extractors.base`: JSON scalars kept, nested values as JSON
text):

* one match that is an object gives its keys; one match that is an array
  gives positional names (``f0, f1, ...`` or ``feature_names`` for inputs,
  ``prediction_0, ...`` for outputs);
* a scalar match is named by the last step of its path: a field gives its
  name (``$.result[*].score`` gives ``score``); within an instance an array
  index ``i`` gives ``f<i>`` / ``prediction_<i>``; anything else gives ``f0``
  / ``prediction``.  For absolute ``outputs`` the index is the instance's,
  so ``$.scores[*]`` gives ``prediction``;
* several matches within one instance (``$['age','income']``) are one
  feature each, named by the same rule, or by their position among the
  matches (``f<j>`` / ``prediction_<j>``) when the rule gives no name.

A response where ``outputs`` (or ``output_instances``) matches nothing
leaves every instance's outputs empty, like a response without predictions.
A spec that does not parse raises ``ExtractError("unknown_shape", ...)``,
with a one-line message naming the field and the expression.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jsonpath_ng import JSONPath
from jsonpath_ng.ext.parser import parse as jsonpath_parse
from jsonpath_ng.jsonpath import DatumInContext, Fields, Index

from collectors.events import Scalar
from collectors.extractors.base import (
    PREDICTION,
    ExtractError,
    Extraction,
    pair,
    prediction_outputs,
    row_features,
    scalar,
)


@dataclass(frozen=True)
class GenericSpec:
    """JSONPath expressions locating instances, their inputs and their outputs (see the module doc)."""

    instances: str
    inputs: str | None
    outputs: str
    output_instances: str | None = None


@dataclass(frozen=True)
class CompiledSpec:
    """A :class:`GenericSpec` with its expressions parsed."""

    spec: GenericSpec
    instances: JSONPath
    inputs: JSONPath | None
    outputs: JSONPath
    output_instances: JSONPath | None


def _parse(field: str, expression: Any) -> JSONPath:
    if not isinstance(expression, str) or not expression.strip():
        raise ExtractError("unknown_shape", f"generic spec: {field} must be a non-empty JSONPath expression")
    try:
        return jsonpath_parse(expression)
    except Exception as exc:  # jsonpath-ng raises several types; any of them means a bad expression
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ExtractError("unknown_shape", f"generic spec: {field} {expression!r} is not valid JSONPath "
                                            f"({reason})") from None


@functools.lru_cache(maxsize=64)
def compile_spec(spec: GenericSpec) -> CompiledSpec:
    """Parse the expressions of ``spec`` once; a bad one raises a one-line ``ExtractError``."""
    return CompiledSpec(
        spec=spec,
        instances=_parse("instances", spec.instances),
        inputs=None if spec.inputs is None else _parse("inputs", spec.inputs),
        outputs=_parse("outputs", spec.outputs),
        output_instances=None if spec.output_instances is None else _parse("output_instances",
                                                                           spec.output_instances),
    )


def _find(path: JSONPath, document: Any, field: str, expression: str | None) -> list[DatumInContext]:
    try:
        return list(path.find(document))
    except Exception as exc:  # a filter comparing unlike types, a too-deep document, ...
        raise ExtractError("unknown_shape", f"generic spec: {field} {expression!r} failed on this payload "
                                            f"({type(exc).__name__})") from None


def _label(match: DatumInContext, prefix: str, default: str) -> str:
    path = match.path
    if isinstance(path, Fields) and len(path.fields) == 1:
        return str(path.fields[0])
    if isinstance(path, Index) and len(path.indices) == 1:
        return f"{prefix}{path.indices[0]}"
    return default


def _mapping(matches: list[DatumInContext], *, output: bool,
             feature_names: Sequence[str] | None, where: str) -> dict[str, Scalar]:
    """Names and values of the matches found within one instance."""
    prefix, single = (f"{PREDICTION}_", PREDICTION) if output else ("f", "f0")
    if len(matches) == 1:
        value = matches[0].value
        if isinstance(value, dict | list):
            return prediction_outputs(value) if output else row_features(value, feature_names, where)
        return {_label(matches[0], prefix, single): scalar(value)}
    return {_label(m, prefix, f"{prefix}{i}"): scalar(m.value) for i, m in enumerate(matches)}


def _prediction(match: DatumInContext) -> dict[str, Scalar]:
    """The outputs of one instance from one match of an absolute ``outputs`` expression."""
    value = match.value
    if isinstance(value, dict | list):
        return prediction_outputs(value)
    path = match.path
    name = str(path.fields[0]) if isinstance(path, Fields) and len(path.fields) == 1 else PREDICTION
    return {name: scalar(value)}


class Generic:
    """Extractor driven by a :class:`CompiledSpec`."""

    name: str = "generic"

    def __init__(self, spec: CompiledSpec, feature_names: Sequence[str] | None = None) -> None:
        self.compiled = spec
        self.feature_names = feature_names

    def matches(self, path: str, request: Any) -> bool:
        try:
            return bool(self.compiled.instances.find(request))
        except Exception:  # the payload does not fit the expression: not ours
            return False

    def extract(self, request: Any, response: Any) -> Extraction:
        c, spec = self.compiled, self.compiled.spec
        found = _find(c.instances, request, "instances", spec.instances)
        if not found:
            raise ExtractError("unknown_shape", f"generic spec: instances {spec.instances!r} matched "
                                                f"nothing in the request")
        inputs: list[dict[str, Scalar]] = []
        for i, instance in enumerate(found):
            where = f"instance {i}"
            if c.inputs is None:
                inputs.append(row_features(instance.value, self.feature_names, where))
                continue
            within = _find(c.inputs, instance.value, "inputs", spec.inputs)
            if not within:
                raise ExtractError("unknown_shape", f"generic spec: inputs {spec.inputs!r} matched "
                                                    f"nothing in {where}")
            inputs.append(_mapping(within, output=False, feature_names=self.feature_names, where=where))
        return pair(inputs, self._outputs(response, len(inputs)))

    def _outputs(self, response: Any, n: int) -> list[dict[str, Scalar]] | None:
        c, spec = self.compiled, self.compiled.spec
        if response is None:
            return None
        if c.output_instances is None:
            matches = _find(c.outputs, response, "outputs", spec.outputs)
            if not matches:
                return None
            if len(matches) != n:
                raise ExtractError("mismatch", f"the request has {n} instances but outputs {spec.outputs!r} "
                                               f"matched {len(matches)} values")
            return [_prediction(m) for m in matches]
        objects = _find(c.output_instances, response, "output_instances", spec.output_instances)
        if not objects:
            return None
        if len(objects) != n:
            raise ExtractError("mismatch", f"the request has {n} instances but output_instances "
                                           f"{spec.output_instances!r} matched {len(objects)} objects")
        return [_mapping(_find(c.outputs, o.value, "outputs", spec.outputs), output=True, feature_names=None,
                         where=f"instance {i}") for i, o in enumerate(objects)]
