"""The drift engine: pure computation, numpy in, frozen dataclasses out, no I/O.

``stats`` (one module per test), ``windows``, ``performance``, ``profiles`` (the
reference and window summaries), ``quality`` and ``analysis`` (a window against
its reference).  Nothing here reads files, talks to Kafka or knows the CLI.
"""
