"""Grafana dashboard generation."""
