"""kmsync_common."""
