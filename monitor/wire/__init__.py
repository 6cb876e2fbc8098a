"""The event wire format (a contract): the one thing collectors and the monitor share.

``encode`` (producers; msgspec only, no numpy, so the sidecar stays small),
``decode`` (the monitor's typed, validating decoder) and ``records`` (a Kafka
record as the monitor sees it).  Importing this package loads nothing else.
"""
