"""The spec suite reuses the API tests' settings: a real PostgreSQL database, Redis DB and S3 bucket per test."""
from tests.integration.conftest import api_settings  # noqa: F401  (a fixture; api_db_url is tests/conftest.py's)
