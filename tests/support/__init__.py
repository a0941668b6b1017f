"""Helpers the tests and benches share: real servers started for tests (PostgreSQL,
Prometheus, uvicorn, the Ollama stand-in), test media, load and fault drivers, recorders."""
