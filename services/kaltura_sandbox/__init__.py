"""kaltura_sandbox service."""
