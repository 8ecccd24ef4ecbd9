"""A browser party's identity: an Ed25519 key in WebCrypto, kept in IndexedDB.

The private key is generated non-extractable, so no script (ours included) can read it; the
browser stores the key object itself in IndexedDB, per origin and browser profile, and signs
with it. Rules about keys and rosters stay auth.py's; this is only the key's keeper.
"""

from __future__ import annotations

import asyncio

from js import crypto, indexedDB
from pyodide.ffi import JsException, JsProxy, to_js

from ..auth import encode_public_key
from .jsffi import Handlers, js_object

DATABASE = "mpc-net"
STORE = "identity-keys"
ED25519 = "Ed25519"


class WebCryptoIdentity:
    """Satisfies handshake.Identity."""

    def __init__(self, private_key: JsProxy, public_key: bytes, *, new: bool = False) -> None:
        self._private_key = private_key
        self.public_key = public_key
        self.new = new  # made just now: this browser had none (first visit, or data cleared)

    @property
    def public_text(self) -> str:
        return encode_public_key(self.public_key)

    @classmethod
    async def load_or_create(cls, slot: str) -> WebCryptoIdentity:
        """The key stored under `slot` in this browser, made on first use."""
        db = await _open_database()
        try:
            pair = await _request(db.transaction(STORE, "readonly").objectStore(STORE).get(slot))
            new = pair is None
            if new:
                pair = await crypto.subtle.generateKey(js_object({"name": ED25519}), False,
                                                       to_js(["sign", "verify"]))
                store = db.transaction(STORE, "readwrite").objectStore(STORE)
                await _request(store.put(js_object({"privateKey": pair.privateKey,
                                                    "publicKey": pair.publicKey}), slot))
        finally:
            db.close()
        raw = await crypto.subtle.exportKey("raw", pair.publicKey)
        return cls(pair.privateKey, raw.to_bytes(), new=new)

    async def sign(self, data: bytes) -> bytes:
        signature = await crypto.subtle.sign(ED25519, self._private_key, to_js(data))
        return signature.to_bytes()


async def verify(public_key: bytes, signature: bytes, data: bytes) -> bool:
    try:
        key = await crypto.subtle.importKey("raw", to_js(public_key), ED25519, False,
                                            to_js(["verify"]))
        return bool(await crypto.subtle.verify(ED25519, key, to_js(signature), to_js(data)))
    except JsException:
        return False  # not a usable Ed25519 public key


async def _open_database() -> JsProxy:
    request = indexedDB.open(DATABASE, 1)
    handlers = Handlers()
    handlers.on(request, "upgradeneeded", lambda _: request.result.createObjectStore(STORE))
    try:
        return await _request(request)
    finally:
        handlers.clear()


async def _request(request: JsProxy) -> JsProxy | None:
    """Wait for an IndexedDB request; its result, or a JsException."""
    future = asyncio.get_running_loop().create_future()
    handlers = Handlers()
    handlers.on(request, "success", lambda _: future.done() or future.set_result(request.result))
    handlers.on(request, "error", lambda _: future.done() or future.set_exception(
        RuntimeError(f"IndexedDB: {request.error.message}")))
    try:
        return await future
    finally:
        handlers.clear()
