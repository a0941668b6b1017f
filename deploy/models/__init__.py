"""The model catalog, the GPU memory estimate, model files, GPUs, start-up errors."""
