"""What happens between the HTTP layer and the engines: the pipeline, the backend policy and its
circuit breakers, the extractor's affinity router, handle calls, the messages between
deployments, errors, metrics, URL downloads."""
