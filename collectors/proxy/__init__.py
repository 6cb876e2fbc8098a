"""The sidecar's HTTP/1.1 reverse proxy in front of the model server."""
