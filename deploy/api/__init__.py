"""HTTP only: routes' parsing, the OpenAI protocol, uploads, API keys, HTTP metrics."""
