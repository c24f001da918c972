"""kmsync_kaltura."""
