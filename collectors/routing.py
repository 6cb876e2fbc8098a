"""Which model a call is for: the name (and version) in its path, ``--model`` and ``--model-map``.

A multi-model server (KServe's ModelServer, Triton) serves several models on one port, and
the path names the one called:

* KServe v1: ``/v1/models/{name}``, ``/v1/models/{name}:predict``, ``/v1/models/{name}:explain``;
* Open Inference Protocol v2: ``/v2/models/{name}[/versions/{version}]/infer`` (and the
  model's other paths, e.g. its metadata).

:func:`served_model` reads that name and version.  :func:`resolve` then picks the event's
model (the Kafka key) by precedence: a ``--model-map`` entry for the served name, then
``--model``, then the served name itself; the version is ``--model-version``, else the
path's.  A path that names no model (MLflow's ``/invocations``) with no ``--model`` has no
model: the call is counted (``requests_unparsed{reason="no_model"}``), never sent under a
made-up key.  The served name is kept in the event (``served_model``) whenever it differs
from the event's model, so a ``--model`` that groups several served models loses nothing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import NamedTuple

# the name runs to the next "/" (or, in v1, to the ":verb"); KServe's names are DNS-1123 labels,
# but any non-empty segment is taken, as the server routes it
_V1 = re.compile(r"^/v1/models/(?P<name>[^/:]+)(?::[A-Za-z]+)?/?$")
_V2 = re.compile(r"^/v2/models/(?P<name>[^/]+)(?:/versions/(?P<version>[^/]+))?(?:/[^/]*)?/?$")


class Served(NamedTuple):
    """The model name (and version) a call's path names."""

    name: str
    version: str | None = None


class Resolved(NamedTuple):
    """The event's model (the Kafka key), its version, and the served model of the path (None when
    it is the event's model, or the path names none)."""

    model: str
    version: str | None
    served: str | None


def served_model(path: str) -> Served | None:
    """The model the path names (KServe v1, OIP v2), or None (e.g. MLflow's ``/invocations``)."""
    if path.startswith("/v1/models/"):
        m = _V1.match(path)
        return Served(m["name"]) if m else None
    if path.startswith("/v2/models/"):
        m = _V2.match(path)
        return Served(m["name"], m["version"]) if m else None
    return None


def resolve(path: str, model: str | None, version: str | None,
            model_map: Mapping[str, str] | None = None) -> Resolved | None:
    """The event's model for a call to ``path`` (see the module doc), or None when nothing names one."""
    served = served_model(path)
    if served is None:
        return Resolved(model, version, None) if model else None
    mapped = model_map.get(served.name) if model_map else None
    chosen = mapped or model or served.name
    return Resolved(chosen, version if version is not None else served.version,
                    served.name if served.name != chosen else None)


def parse_model_map(text: str | None) -> dict[str, str]:
    """``served=configured,...`` as a mapping; ValueError (one line) on a malformed entry."""
    out: dict[str, str] = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        served, sep, configured = (part.strip() for part in item.partition("="))
        if not sep or not served or not configured:
            raise ValueError(f"--model-map entries are served=configured; got {item!r}")
        if served in out and out[served] != configured:
            raise ValueError(f"--model-map names {served!r} twice ({out[served]!r} and {configured!r})")
        out[served] = configured
    return out
