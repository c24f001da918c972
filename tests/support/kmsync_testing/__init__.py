"""Test support for kmsync: the local Kafka broker launcher, helpers that run services under test.

Used by the tests, the benchmark and the `kmsync run` demo stack; never by a service or a library.
"""
