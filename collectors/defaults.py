"""The collectors' defaults, each defined once: the sidecar, the SDK, ``inject`` and the CLI read them here.

Plain constants, no imports, so the CLI can read them without loading the collector.
"""

from __future__ import annotations

from typing import Final

# -- where events go ---------------------------------------------------------------------------
TOPIC: Final = "driftline.predictions"  # the predictions topic
KAFKA_LOCAL: Final = "localhost:9092"  # the SDK's bootstrap servers: a broker next to the model
KAFKA_IN_CLUSTER: Final = "kafka.kafka.svc:9092"  # an injected sidecar's bootstrap servers

# -- the sidecar -------------------------------------------------------------------------------
IMAGE: Final = "ghcr.io/example/driftline:latest"  # the collector's container image
LISTEN_HOST: Final = "0.0.0.0"
PROXY_PORT: Final = 8081  # the port the proxy listens on (what the Service targets)
LISTEN: Final = f"{LISTEN_HOST}:{PROXY_PORT}"
METRICS_PORT: Final = 9091  # the collector's own /metrics and /healthz
MAX_CPU: Final = 0.8  # cores (smoothed) the collector process may use before it sheds captures
UPSTREAM_TIMEOUT_S: Final = 300.0  # seconds the proxy waits for the model's answer
# seconds a busy thread of the collector (the delivery, kafka-python's I/O) may hold the interpreter
# lock while the proxy's event loop waits for it (sys.setswitchinterval; Python's default 5 ms
# put up to 5 ms on a proxied request whenever a batch was being encoded)
SWITCH_INTERVAL_S: Final = 0.0005

# -- capture -----------------------------------------------------------------------------------
MAX_PAYLOAD_BYTES: Final = 1024 * 1024  # a larger request or response body is passed on, not captured
REQUEST_ID_HEADER: Final = "X-Request-Id"  # the request's id, joined with labels later
SKIP_HEADER: Final = "X-Driftline-Skip"  # "1" opts a request out of capture
# a body is a JSON header of this many bytes, then binary tensors (the OIP binary tensor extension)
HEADER_LENGTH_HEADER: Final = "Inference-Header-Content-Length"

# -- delivery ----------------------------------------------------------------------------------
QUEUE_EVENTS: Final = 10_000  # events held at most while Kafka is slow or down
BATCH_EVENTS: Final = 500  # the sidecar's events per Kafka message at most
LINGER_S: Final = 0.05  # seconds a message waits to fill before it is sent
