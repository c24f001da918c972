"""kmsync_config."""
