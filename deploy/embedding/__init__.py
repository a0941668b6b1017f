"""The sentence-embedding model library search runs (sentence-transformers)."""
