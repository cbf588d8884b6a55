"""podinfra: make Kubernetes nodes start pod sandboxes from the right pause image, air-gapped."""

__version__ = "0.1.0"
