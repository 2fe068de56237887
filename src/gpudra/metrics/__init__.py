"""Prometheus metrics: definitions on an injected registry, observe helpers, a server.

The only package that imports prometheus_client.
"""
