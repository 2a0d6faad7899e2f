"""The CLI's commands, one module per area; each has ``register(app)``."""
