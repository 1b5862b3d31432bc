"""Bytewax dataflows: wiring only. Each module exposes ``get_flow(settings)`` and a lazily built ``flow``."""
