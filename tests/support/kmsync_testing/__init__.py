"""Test support for kmsync: the local Kafka broker launcher, helpers that run services under test.

- ``kafka_broker``: a real single-node Kafka (KRaft) from Maven Central jars; start, crash, restart, stop.
- ``processes``: children that die with their parent, ``free_port``, and the one ``stop_process``
  (SIGTERM, a bounded wait, SIGKILL).
- ``waiting.wait_for``: the one deadline-bounded poll for tests; ``topics.read_topic``: the one topic reader.
- ``ingest``: the ingest service in-process or as a child process, with tenants for a Kaltura sandbox.
- ``leaks.no_unclosed_kafka_clients``: fails a block that leaves an aiokafka client for the garbage collector.

Used by the tests, the benchmark and the `kmsync run` demo stack; never by a service or a library
(tests/architecture/test_import_rules.py checks it).
"""
