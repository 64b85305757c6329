"""Secrets the service must use again later (webhook signing secrets), kept encrypted with the server's
key: Fernet (AES-128-CBC with HMAC-SHA256, from `cryptography`) under a key derived with HKDF-SHA256 from
EVAL_PIPELINE_SECRET_KEY, else from the home's master secret (stores/keys.py). Only the token is stored."""
from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from eval_pipeline.errors import EvalPipelineError
from eval_pipeline.stores.keys import master_secret


class SecretUnreadable(EvalPipelineError):
    """A stored secret cannot be decrypted: the server key changed since it was stored."""

    code = "secret_unreadable"


def _fernet(home: Path) -> Fernet:
    server_key = os.environ.get("EVAL_PIPELINE_SECRET_KEY", "").encode() or master_secret(home)
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"eval_pipeline secrets v1").derive(server_key)
    return Fernet(base64.urlsafe_b64encode(key))


def encrypt_secret(home: Path, secret: str) -> str:
    """The Fernet token (ASCII) of `secret` under the server key of `home`'s deployment."""
    return _fernet(home).encrypt(secret.encode()).decode()


def decrypt_secret(home: Path, token: str) -> str:
    """The secret of a token encrypt_secret made. Raises SecretUnreadable when the server key changed."""
    try:
        return _fernet(home).decrypt(token.encode()).decode()
    except InvalidToken:
        raise SecretUnreadable("a stored secret cannot be decrypted with this server key "
                               "(EVAL_PIPELINE_SECRET_KEY changed?): set the secret again") from None
