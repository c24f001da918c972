"""kmsync_marketo."""
