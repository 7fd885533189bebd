"""Venues: one module per exchange's market-data protocol (ids, subscriptions, keepalive, the
pure parser and its renderer), and the registry that names them."""
