"""The umbrella `kmsync` command."""
