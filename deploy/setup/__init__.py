"""Install-time helpers: environment fix-ups the project's setup applies (see scripts/setup_env.py)."""
