"""The local HTTP API, Prometheus metrics, the status document and `edge-agent status`."""
