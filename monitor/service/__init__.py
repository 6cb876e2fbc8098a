"""``driftline serve``: the composition root (``app``), Kafka behind the ``Source`` and
``Sink`` interfaces (``kafka``), the HTTP API (``api``) and the Prometheus export (``export``)."""
