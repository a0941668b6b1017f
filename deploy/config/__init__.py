"""Typed settings, environment overrides and the Serve config files."""
