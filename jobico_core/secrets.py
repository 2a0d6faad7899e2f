"""Encryption at rest of tenants' environment values (``jobico env set``).

AES-256-GCM with a key derived from the operator's ``JOBICO_SECRET_KEY`` by HKDF-SHA256
under a purpose label (``jobico/environment/v1``), so the same operator secret never
serves two purposes. Each stored value is::

    v1:<key id>:<base64url(nonce 12 bytes | ciphertext | tag)>

The key id (the first 12 hex digits of SHA-256 over the derived key) names the operator
key a value was sealed with; ``open_value`` refuses a value sealed under another key
with a clear message instead of a bare authentication failure, and a future rotation
of the operator key can re-seal rows key id by key id. The associated data binds a
ciphertext to its tenant and variable name: a row copied to another tenant or name
does not decrypt.

The embedded default (``jobico run`` without a key, tests) uses a fixed development
key (key id of ``jobico-embedded-development-key``); ``Settings.check`` refuses to
start anything else without a real ``JOBICO_SECRET_KEY``.
"""
from __future__ import annotations

import base64
import functools
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from .errors import Unavailable

FORMAT = "v1"
PURPOSE = b"jobico/environment/v1"
EMBEDDED_KEY = "jobico-embedded-development-key"
MASK = "***"


class SecretError(Unavailable):
    """A stored value cannot be opened with this process's key (wrong or rotated JOBICO_SECRET_KEY)."""


@functools.lru_cache(maxsize=8)
def _derive(operator_key: str) -> tuple[str, AESGCM]:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=PURPOSE).derive(operator_key.encode("utf-8"))
    return hashlib.sha256(key).hexdigest()[:12], AESGCM(key)


def _operator_key(settings) -> str:
    if settings.secret_key:
        return settings.secret_key
    if settings.embedded:
        return EMBEDDED_KEY
    raise SecretError("JOBICO_SECRET_KEY is not set: environment values cannot be encrypted or read")


def key_id(settings) -> str:
    return _derive(_operator_key(settings))[0]


def _aad(tenant: str, name: str) -> bytes:
    return f"{tenant}\0{name}".encode()


def seal(settings, tenant: str, name: str, value: str) -> tuple[str, str]:
    """Encrypt ``value``; returns (stored text, key id)."""
    kid, aead = _derive(_operator_key(settings))
    nonce = os.urandom(12)
    blob = nonce + aead.encrypt(nonce, value.encode("utf-8"), _aad(tenant, name))
    return f"{FORMAT}:{kid}:{base64.urlsafe_b64encode(blob).decode('ascii')}", kid


def open_value(settings, tenant: str, name: str, stored: str) -> str:
    """Decrypt a value ``seal`` produced for this tenant and name."""
    kid, aead = _derive(_operator_key(settings))
    try:
        fmt, stored_kid, b64 = stored.split(":", 2)
    except ValueError:
        raise SecretError(f"environment variable {name!r} of tenant {tenant!r} is not in a known format") from None
    if fmt != FORMAT:
        raise SecretError(f"environment variable {name!r} of tenant {tenant!r} uses format {fmt!r}, not {FORMAT!r}")
    if stored_kid != kid:
        raise SecretError(f"environment variable {name!r} of tenant {tenant!r} was sealed with operator key "
                          f"{stored_kid}, but this process has key {kid} (JOBICO_SECRET_KEY differs)")
    blob = base64.urlsafe_b64decode(b64.encode("ascii"))
    try:
        return aead.decrypt(blob[:12], blob[12:], _aad(tenant, name)).decode("utf-8")
    except InvalidTag:
        raise SecretError(f"environment variable {name!r} of tenant {tenant!r} failed authentication "
                          "(tampered with, or copied from another tenant or name)") from None


def redact(text, secrets: list[str]):
    """Replace every occurrence of each secret value in ``text`` by ``***`` (longest first,
    so a secret containing another is masked whole). Non-strings pass through."""
    if not isinstance(text, str) or not text or not secrets:
        return text
    for value in secrets:
        if value in text:
            text = text.replace(value, MASK)
    return text


def redaction_list(values) -> list[str]:
    """The secret values worth masking, longest first (empty values are skipped)."""
    return sorted({v for v in values if v}, key=len, reverse=True)
