"""The `vidserve` command and what it runs."""
