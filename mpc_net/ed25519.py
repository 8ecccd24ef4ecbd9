"""Ed25519 signature checks with `cryptography`, for whoever runs natively: the room server (which
checks seat proofs synchronously, per message) and native parties. Pages verify with WebCrypto
(browser/identity.py) instead."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def check_signature(public_key: bytes, signature: bytes, data: bytes) -> bool:
    """Whether `signature` is public_key's Ed25519 signature of `data`."""
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, data)
    except (InvalidSignature, ValueError):
        return False
    return True
