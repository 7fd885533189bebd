"""The live path: the ingester, the worker (its Redis lane, the in-process handoff, per-symbol
state), the predictor, and the service that wires them together."""
