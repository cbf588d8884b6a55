"""containerd: where each release keeps the sandbox image (``shape``), editing ``config.toml``
(``config``), and what the running daemon reads (``daemon``)."""
