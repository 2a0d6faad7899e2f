"""The operator's side: the `jobico` entry point (the tenant's CLI plus `run`, `migrate`,
`prepare-python`, `mqtt-bridge`, `mqtt-publish`) and local servers for `jobico run` and the tests
(``embedded``: Redis, PostgreSQL, S3; ``mqtt_broker``). The only package that may import them all."""
