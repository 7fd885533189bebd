"""The websocket shell every venue's feed runs in: connect, subscribe, keepalive, watchdog,
backoff, trade-id gaps and connection renewal."""
