"""The simulated exchange: a seeded synthetic market and a websocket server for it."""
