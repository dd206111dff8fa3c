"""Who is asking: client credentials, short-lived tokens, signed file URLs.

Each consumer of conf/consumers.yaml has client credentials, generated once into
<data root>/secrets/service_clients/<code>.json (mode 600, never a default) and stored in the
service's state only as an Argon2id hash. With them it buys an access token (OAuth2 client
credentials, RFC 6749 §4.4): a JWT (HS256) signed with <data root>/secrets/service_jwt_key,
naming the consumer, a token id (jti, carried into every access-log row) and an expiry of
service.token_ttl_s. Delta Sharing file URLs carry their own HMAC signature and expiry, since
the client sends no token with them.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from citylake import secret_files
from citylake.config import Consumer, Environment
from citylake.service_state import Store

AUDIENCE = "citylake-service"
_hasher = PasswordHasher()


class AuthError(Exception):
    """No, a bad, an expired or a tampered credential; the message says which (never why not)."""


def signing_key(env: Environment) -> bytes:
    """The key that signs tokens and file URLs, generated once (mode 600)."""
    return secret_files.read_or_create(env.secrets / "service_jwt_key", 48).encode()


def credentials_file(env: Environment, code: str) -> Path:
    return env.secrets / "service_clients" / f"{code}.json"


def ensure_credentials(env: Environment, store: Store, consumers: dict[str, Consumer]) -> list[str]:
    """Every consumer has its credentials file and the state its hash; returns the codes whose
    credentials were made now. A file without a hash (a new state database) is hashed again; a
    hash without a file (the file was deleted) gets new credentials: the old secret is dead."""
    made = []
    base = f"http://{env.services.host}:{env.services.service_port}"
    for code, consumer in consumers.items():
        path = credentials_file(env, code)
        stored = store.secret_hash(code)
        if path.exists():
            secret = json.loads(path.read_text(encoding="utf-8"))["client_secret"]
            if stored is None or not _verifies(stored, secret):
                store.set_secret_hash(code, _hasher.hash(secret))
            continue
        secret = secrets.token_urlsafe(32)
        store.set_secret_hash(code, _hasher.hash(secret))
        document = {
            "client_id": code,
            "client_secret": secret,
            "consumer": consumer.label,
            "token_url": f"{base}/oauth/token",
            "services": consumer.services,
        }
        secret_files.write(path, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
        made.append(code)
    return made


def _verifies(secret_hash: str, secret: str) -> bool:
    try:
        return _hasher.verify(secret_hash, secret)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Token:
    consumer: str
    token_id: str
    expires_at: int


def issue_token(
    env: Environment,
    store: Store,
    consumers: dict[str, Consumer],
    client_id: str,
    client_secret: str,
) -> tuple[str, Token]:
    """A signed access token for a consumer whose secret verifies."""
    stored = store.secret_hash(client_id) if client_id in consumers else None
    if stored is None or not _verifies(stored, client_secret):
        raise AuthError("invalid_client")
    now = int(time.time())
    token = Token(client_id, str(uuid.uuid4()), now + env.service.token_ttl_s)
    claims = {
        "sub": client_id,
        "jti": token.token_id,
        "iat": now,
        "exp": token.expires_at,
        "aud": AUDIENCE,
    }
    return jwt.encode(claims, signing_key(env), algorithm="HS256"), token


def read_token(key: bytes, bearer: str, consumers: dict[str, Consumer]) -> Token:
    """The token's consumer and id, or AuthError: expired, tampered or of no known consumer."""
    try:
        claims = jwt.decode(
            bearer,
            key,
            algorithms=["HS256"],
            audience=AUDIENCE,
            options={"require": ["sub", "jti", "exp", "aud"]},
        )
    except jwt.ExpiredSignatureError as exc:
        raise AuthError("token expired") from exc
    except jwt.InvalidTokenError as exc:
        raise AuthError("invalid token") from exc
    if claims["sub"] not in consumers:
        raise AuthError("invalid token")
    return Token(claims["sub"], claims["jti"], claims["exp"])


def sign_file(key: bytes, name: str, expires_at: int) -> str:
    message = f"{name}\n{expires_at}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def file_signature_ok(key: bytes, name: str, expires_at: int, signature: str) -> bool:
    if expires_at < time.time():
        return False
    return hmac.compare_digest(sign_file(key, name, expires_at), signature)
