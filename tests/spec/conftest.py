"""The spec suite reuses the API tests' settings: a real PostgreSQL database, Redis DB and S3 bucket per test."""
from tests.integration.conftest import api_db_url, api_settings  # noqa: F401  (fixtures)
