"""The archiver's Ed25519 signing key: created once (mode 0600), loaded, rotated, and public keys as text.

A public key is written `ed25519:<base64 of its 32 raw bytes>`: short enough
for a command line, a banner and every checkpoint header (`key`, `next_key`).
The private key is a PKCS#8 PEM file outside the archive directory (by
default `<data>/archive.key`), so write access to the archive is not enough
to sign. Rotation (`agentcast archiver --rotate-key`) writes the next key
beside it (`<key>.next`); the archiver names it in its next checkpoint, signed
by the current key, and only then makes it the current one.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agentcast.settings import Settings

PREFIX: Final = "ed25519:"
KEY_FILE: Final = "archive.key"
NEXT_SUFFIX: Final = ".next"


class KeyProblem(ValueError):
    """A key that cannot be read or parsed (a path or `ed25519:...` text)."""


def key_path(settings: Settings) -> Path:
    """Where the archiver's private key lives: `archive_key`, else `<data>/archive.key`."""
    if settings.archive_key:
        return Path(settings.archive_key).expanduser()
    return settings.resolved_data_dir() / KEY_FILE


def next_path(path: Path) -> Path:
    return path.with_name(path.name + NEXT_SUFFIX)


def public_text(key: Ed25519PublicKey) -> str:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return PREFIX + base64.b64encode(raw).decode("ascii")


def public_of(private: Ed25519PrivateKey) -> str:
    return public_text(private.public_key())


def load_or_create(path: Path) -> Ed25519PrivateKey:
    """The private key at `path`; a new one is generated there (0600) at first use."""
    if not path.exists():
        _write(path, Ed25519PrivateKey.generate())
    return load_private(path)


def load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise KeyProblem(f"{path}: not a readable Ed25519 private key ({exc})") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{path}: not an Ed25519 private key")
    return key


def create_next(path: Path) -> Ed25519PrivateKey:
    """A new key at `<path>.next`, for the archiver to rotate to at its next checkpoint."""
    target = next_path(path)
    if target.exists():
        return load_private(target)
    key = Ed25519PrivateKey.generate()
    _write(target, key)
    return key


def _write(path: Path, key: Ed25519PrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def parse_public(text: str) -> Ed25519PublicKey:
    """A public key from `ed25519:<base64>`, or from a file holding that text or a PEM public key."""
    text = text.strip()
    if not text.startswith(PREFIX):
        path = Path(text).expanduser()
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise KeyProblem(f"{text}: neither `ed25519:<base64>` nor a readable file ({exc})")
        if b"PUBLIC KEY" in data:
            key = serialization.load_pem_public_key(data)
            if not isinstance(key, Ed25519PublicKey):
                raise KeyProblem(f"{text}: not an Ed25519 public key")
            return key
        text = data.decode("ascii", "replace").strip()
        if not text.startswith(PREFIX):
            raise KeyProblem(f"{path}: does not hold an `ed25519:<base64>` public key")
    try:
        raw = base64.b64decode(text[len(PREFIX) :], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except (binascii.Error, ValueError):
        raise KeyProblem(f"{text!r}: not an Ed25519 public key (32 bytes, base64)") from None


def sign(private: Ed25519PrivateKey, message: bytes) -> str:
    return base64.b64encode(private.sign(message)).decode("ascii")


def valid(public: str, message: bytes, signature: str) -> bool:
    """Whether `signature` (base64) is `public`'s over `message`; False for any malformed input."""
    try:
        key = parse_public(public) if public.startswith(PREFIX) else None
        if key is None:
            return False
        key.verify(base64.b64decode(signature, validate=True), message)
    except (KeyProblem, InvalidSignature, binascii.Error, ValueError):
        return False
    return True
