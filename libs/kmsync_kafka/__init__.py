"""kmsync_kafka."""
