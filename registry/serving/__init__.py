"""Model serving: one ASGI app per deployed version, and the supervisor that runs them."""
