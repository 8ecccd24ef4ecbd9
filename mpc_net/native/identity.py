"""Identity key files and roster files on disk, with Ed25519 from `cryptography`.

Browsers keep their keys in WebCrypto instead; the rules about keys and rosters are auth.py's.
"""

from __future__ import annotations

import errno
import os
import stat

from ..auth import Roster, RosterError, decode_public_key, encode_public_key
from ..ed25519 import check_signature
from ..rtc.lean import lean_imports

with lean_imports():  # serialization's SSH formats load on first use
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MAX_FILE_BYTES = 1 << 20


class KeyFileError(Exception):
    """A key or roster file that cannot be used; the text names the file and the problem."""


class FileIdentity:
    """An identity whose Ed25519 private key lives in a PEM file (PKCS#8, unencrypted)."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    @classmethod
    def generate(cls) -> FileIdentity:
        return cls(Ed25519PrivateKey.generate())

    @property
    def public_text(self) -> str:
        return encode_public_key(self.public_key)

    async def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def save(self, path: str | os.PathLike, *, force: bool = False) -> None:
        """Write the private key readable by its owner only; never replace a key by accident."""
        pem = self._key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        _write(path, pem, what="a key", force=force, private=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> FileIdentity:
        data = _read(path, "key file")
        mode = os.stat(path).st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise KeyFileError(f"key file {path} is accessible by others (mode "
                               f"{stat.S_IMODE(mode):o}); run: chmod 600 {path}")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError):
            raise KeyFileError(f"key file {path} is not an unencrypted PEM private key "
                               "(make one with `mpc-net keygen`)") from None
        if not isinstance(key, Ed25519PrivateKey):
            raise KeyFileError(f"key file {path} holds a {type(key).__name__.removeprefix('_')}"
                               ", not an Ed25519 key")
        return cls(key)


async def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    return check_signature(public_key, signature, data)


def load_roster(path: str | os.PathLike) -> Roster:
    text = _read(path, "roster file").decode("utf-8", errors="replace")
    try:
        return Roster.from_json(text)
    except RosterError as exc:
        raise KeyFileError(f"roster file {path}: {exc}") from None


def public_key_of(source: str) -> bytes:
    """A public key given as text (`ed25519:...`), or in a file: a key file or a line of text."""
    if source.startswith("ed25519:"):
        return decode_public_key(source)
    data = _read(source, "public key")
    if b"PRIVATE KEY" in data:
        return FileIdentity.load(source).public_key
    try:
        return decode_public_key(data.decode(errors="replace").strip())
    except RosterError as exc:
        raise KeyFileError(f"{source}: {exc}") from None


def _read(path: str | os.PathLike, what: str) -> bytes:
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except FileNotFoundError:
        raise KeyFileError(f"{what} {path} does not exist") from None
    except IsADirectoryError:
        raise KeyFileError(f"{what} {path} is a directory") from None
    except OSError as exc:
        raise KeyFileError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise KeyFileError(f"{what} {path} is too large to be one")
    if not data.strip():
        raise KeyFileError(f"{what} {path} is empty")
    return data


def write_roster(roster: Roster, path: str | os.PathLike, *, force: bool = False) -> None:
    _write(path, roster.to_json().encode(), what="it", force=force, private=False)


def _write(path: str | os.PathLike, data: bytes, *, what: str, force: bool,
           private: bool) -> None:
    """Write a file of ours at `path`, which must not exist unless `force`; never through a
    symbolic link or into a file with other names (hard links), which someone else may have put
    there to make us write or truncate a file of their choosing."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | (0 if force else os.O_EXCL)
    try:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0), 0o600 if private else 0o644)
    except FileExistsError:
        raise KeyFileError(f"{path} exists; not overwriting {what} (use --force to replace "
                           "it)") from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise KeyFileError(f"{path} is a symbolic link; not writing through it") from None
        raise KeyFileError(f"cannot write {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        status = os.fstat(fd)
        if not stat.S_ISREG(status.st_mode) or status.st_nlink > 1:
            raise KeyFileError(f"{path} is not a file of its own (a device, pipe or hard link); "
                               "not writing into it")
        if private:
            os.fchmod(fd, 0o600)  # O_CREAT's mode does not apply to an existing file
        os.ftruncate(fd, 0)
        out.write(data)
