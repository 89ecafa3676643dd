"""Encryption of secrets at rest (users' own API keys, interaction tokens).

Fernet (AES-128-CBC + HMAC) keyed from `SECRET_KEY`. Without one, a random key is created once
next to the database with owner-only permissions, so a fresh install is safe by default and a
copy of the SQLite file alone reveals nothing.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr


class SecretBox:
    """Encrypts and decrypts small secrets."""

    def __init__(self, key_material: str) -> None:
        digest = hashlib.sha256(key_material.encode()).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(digest))

    @classmethod
    def from_settings(cls, secret_key: SecretStr | None, key_file: Path) -> SecretBox:
        if secret_key is not None:
            return cls(secret_key.get_secret_value())
        if key_file.exists():
            return cls(key_file.read_text().strip())
        key_file.parent.mkdir(parents=True, exist_ok=True)
        material = secrets.token_urlsafe(32)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(material)
        return cls(material)

    def encrypt(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def decrypt(self, ciphertext: bytes) -> str:
        """Decrypt, or raise ValueError (never with the secret in the message)."""
        try:
            return self._fernet.decrypt(ciphertext).decode()
        except InvalidToken:
            raise ValueError("stored secret cannot be decrypted with the current SECRET_KEY") from None

    def encrypt_text(self, plaintext: str) -> str:
        return self.encrypt(plaintext).decode("ascii")

    def decrypt_text(self, ciphertext: str) -> str:
        return self.decrypt(ciphertext.encode("ascii"))
