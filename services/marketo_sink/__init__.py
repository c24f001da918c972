"""marketo_sink service."""
