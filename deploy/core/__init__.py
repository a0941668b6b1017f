"""The shared core under every layer: the typed errors a client can see (errors.py), the domain
types a request carries between deployments (messages.py), and the parsing of numbers from
untrusted text (numbers.py). It imports nothing else of `deploy` (an import-linter contract in
pyproject.toml holds it to that; docs/architecture.md)."""
