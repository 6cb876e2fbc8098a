"""Attaching the collector on Kubernetes: ``driftline inject`` and the mutating admission webhook."""
