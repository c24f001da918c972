"""transform service."""
