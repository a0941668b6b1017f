"""Install-time helpers: fix-ups the project's setup applies (scripts/setup_env.py)."""
