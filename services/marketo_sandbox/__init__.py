"""marketo_sandbox service."""
