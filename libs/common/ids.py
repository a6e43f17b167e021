"""Unguessable identifiers: a status URL or share URL shows someone's face, so ids must not be enumerable."""

from __future__ import annotations

import hashlib
import hmac
import secrets

ID_BYTES = 16  # 128 random bits (the requirement is ≥ 96)
ID_PATTERN = r"^[A-Za-z0-9_-]{16,64}$"  # url-safe base64 without padding


def new_id() -> str:
    """A fresh url-safe id with 128 random bits (photo ids, share ids, visitor ids)."""
    return secrets.token_urlsafe(ID_BYTES)


def new_secret() -> str:
    """A delete token: shown once to the owner, stored only as a hash."""
    return secrets.token_urlsafe(24)


def hash_secret(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def secret_matches(token: str | None, stored_hash: str) -> bool:
    """Constant-time comparison of a presented token against its stored hash."""
    if not token:
        return False
    return hmac.compare_digest(hash_secret(token), stored_hash)
