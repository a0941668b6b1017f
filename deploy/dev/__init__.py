"""For tests and laptops: the tiny test model, the torchvision fix for CPU torch."""
