"""Benchmarks of idlewire on the local stack (`python -m bench.idle`, `python -m bench.tls_memory`).

Results and method: docs/benchmarks.md. Nothing here is imported by the producer.
"""
