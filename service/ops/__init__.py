"""Operating the service: settings, metrics, health endpoints, logging, redaction."""
