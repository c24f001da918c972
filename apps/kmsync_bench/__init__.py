"""Benchmarks: API efficiency, budget use, latency, capacity and backfill, measured side by side."""
