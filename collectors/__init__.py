"""Sidecar collectors that capture predictions (see the collector issue)."""
