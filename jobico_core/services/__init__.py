"""Domain services: the operations the API exposes, independent of HTTP.

Each function takes a ``Context`` (settings + database + object store +
broker) and plain values, and raises ``jobico_core.errors`` on bad input.
"""
