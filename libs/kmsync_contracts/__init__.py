"""kmsync_contracts."""
