"""Payload extractors of the sidecar collector: raw bodies of a model-server call in, instances out.

Pure (no I/O): :func:`extract` takes the URL path and the request and
response bodies and returns the protocol it used (one of :data:`PROTOCOLS`)
and a tuple of :class:`collectors.events.Instance`, one per instance of the
batch.  Protocols: KServe v1 (:mod:`.kserve_v1`), Open Inference Protocol v2
(:mod:`.oip_v2`, with its binary tensor extension, :mod:`.binary`), MLflow
scoring (:mod:`.mlflow`, JSON or CSV) and any JSON server described by
JSONPath (:mod:`.generic`).  :func:`apply` with a
:class:`FieldPolicy` then drops or hashes personal fields (:mod:`.pii`).
Every payload error is an :class:`ExtractError` with a one-line message.
"""

from __future__ import annotations

from collectors.extractors.base import REASONS, ExtractError, Extraction, Extractor
from collectors.extractors.generic import CompiledSpec, GenericSpec, compile_spec
from collectors.extractors.pii import FieldPolicy, apply
from collectors.extractors.select import PROTOCOLS, by_shape, extract

__all__ = [
    "PROTOCOLS",
    "REASONS",
    "CompiledSpec",
    "ExtractError",
    "Extraction",
    "Extractor",
    "FieldPolicy",
    "GenericSpec",
    "apply",
    "by_shape",
    "compile_spec",
    "extract",
]
