"""Encryption of secrets at rest (users' own API keys, interaction tokens), and keys derived for signing.

Fernet (AES-128-CBC + HMAC) keyed from `SECRET_KEY`. Without one, a random key is created once
next to the database with owner-only permissions, so a fresh install is safe by default and a
copy of the SQLite file alone reveals nothing. Other uses (signed video links) get their own key
derived from the same material, so one secret never serves two purposes directly.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import logging
import os
import secrets
import stat
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from pydantic import SecretStr

log = logging.getLogger(__name__)

MIN_KEY_BYTES = 32  # below this, a key could be guessed or was left empty by mistake


class SecretKeyError(RuntimeError):
    """The key material is unusable; the message is one line for the operator (never the key itself)."""


class SecretBox:
    """Encrypts and decrypts small secrets, and derives purpose-bound signing keys."""

    def __init__(self, key_material: str) -> None:
        encoded = key_material.encode()
        if len(encoded) < MIN_KEY_BYTES:
            raise SecretKeyError(f"the secret key has {len(encoded)} bytes; at least {MIN_KEY_BYTES} are needed")
        self._root = hashlib.sha256(encoded).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(self._root))

    def subkey(self, purpose: str) -> bytes:
        """A key for one purpose (e.g. "video-links"), independent of the Fernet key and of each other."""
        return hmac.new(self._root, b"videobot/" + purpose.encode(), hashlib.sha256).digest()

    @classmethod
    def from_settings(cls, secret_key: SecretStr | None, key_file: Path) -> SecretBox:
        """SECRET_KEY when set, else `key_file` (created once, atomically, mode 0600)."""
        if secret_key is not None:
            try:
                return cls(secret_key.get_secret_value())
            except SecretKeyError as error:
                raise SecretKeyError(f"SECRET_KEY is too short: {error}") from None
        if not key_file.exists():
            _create_key_file(key_file)
        mode = stat.S_IMODE(key_file.stat().st_mode)
        if mode & 0o077:
            log.warning("%s has mode %o: anyone with that access can decrypt stored secrets; "
                        "run `chmod 600` on it", key_file, mode)
        try:
            material = key_file.read_text(encoding="utf-8").strip()
            return cls(material)
        except (SecretKeyError, UnicodeDecodeError) as error:
            raise SecretKeyError(f"{key_file} is not a usable key ({error}): set SECRET_KEY or delete the file "
                                 "only if nothing was encrypted with it yet") from None

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


def _create_key_file(key_file: Path) -> None:
    """Write a fresh key so that a crash or a second process never leaves an empty or different key.

    The key goes to a 0600 temporary file in the same folder, is fsynced, then hard-linked into
    place: unlike a rename, linking fails when another process created the file first, and then
    that process's key wins (both processes end up reading the same one).
    """
    key_file.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{key_file.name}.", suffix=".tmp", dir=key_file.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:  # mkstemp creates it 0600
            handle.write(secrets.token_urlsafe(48))
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, key_file)
        dir_fd = os.open(key_file.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    finally:
        tmp.unlink(missing_ok=True)
