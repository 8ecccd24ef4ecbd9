"""Party identities, rosters and the channel-binding handshake. Pure code, no I/O and no
cryptography library: signing and verifying are passed in (natively: `native/identity.py`; browsers:
WebCrypto), so native and browser parties share every rule here.

DTLS protects a channel between two certificates, and whoever relays the session descriptions
chooses which certificates those are. So once a data channel is open each side signs, with its
long-term Ed25519 identity key, a statement that holds the certificate fingerprints it sees (its
own and the peer's), the roster's session id, the room, both indexes, its program and MPyC mode.
A party in the middle sees different fingerprints on each side and cannot make the signatures
verify. Each side's certificate is made for this one connection, so the peer's fingerprint in a
statement does what a nonce of the verifier would: no statement signed for another connection
names it (SECURITY.md, "The handshake"), and each side can sign before it hears from the other.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct

from .values import Value

KEY_PREFIX = "ed25519:"
KEY_BYTES = 32
SIGNATURE_BYTES = 64
DIGEST_BYTES = 32
MAX_NAME_CHARS = 64
ROSTER_FORMAT = 1
HANDSHAKE_VERSION = 4
STATEMENT_LABEL = b"mpc-net/auth/v4"
NO_PROGRAM = bytes(DIGEST_BYTES)  # the program hash of a party that states none
SHORT_HASH_DIGITS = 16  # hex digits of a program hash shown to people


class AuthError(Exception):
    """Authentication failed; the text says why, for the message that names the party."""


class RosterError(ValueError):
    """A roster or a public key that cannot be used; the text says what is wrong."""


def encode_public_key(raw: bytes) -> str:
    """The one-line text form of a public key: `ed25519:` and unpadded base64url."""
    return KEY_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_public_key(text: str) -> bytes:
    if not isinstance(text, str) or not text.startswith(KEY_PREFIX):
        raise RosterError(f"not an mpc-net public key (they start with {KEY_PREFIX!r}): "
                          f"{str(text)[:60]!r}")
    body = text[len(KEY_PREFIX):]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != KEY_BYTES or encode_public_key(raw) != text:
        raise RosterError(f"malformed public key: {text[:60]!r}")
    return raw


def split_roster_entry(item: str) -> tuple[str, str]:
    """A roster entry as `mpc-net roster` and the page take it, `NAME=KEY` or `KEY`, as
    (name, key); the key part is a public key's text (or, for the CLI, a key file)."""
    has_name = "=" in item and not item.startswith(KEY_PREFIX)
    name, _, key = item.partition("=") if has_name else ("", "", item)
    return name.strip(), key.strip()


class Roster(Value):
    """The parties' public keys in party order; all parties must hold the same roster."""

    keys: tuple[bytes, ...]
    names: tuple[str, ...]

    @classmethod
    def of(cls, keys: list[bytes], names: list[str] | None = None) -> Roster:
        names = names or [""] * len(keys)
        if not keys:
            raise RosterError("a roster needs at least one party")
        if len(names) != len(keys):
            raise RosterError("one name per key")
        for i, key in enumerate(keys):
            if len(key) != KEY_BYTES:
                raise RosterError(f"party {i}: a public key has {KEY_BYTES} bytes")
            if key in keys[:i]:
                raise RosterError(f"parties {keys.index(key)} and {i} have the same key")
        for i, name in enumerate(names):
            if not isinstance(name, str) or len(name) > MAX_NAME_CHARS or not name.isprintable():
                raise RosterError(f"party {i}: a name is printable text of at most "
                                  f"{MAX_NAME_CHARS} characters")
        return cls(tuple(keys), tuple(names))

    @classmethod
    def from_json(cls, text: str) -> Roster:
        try:
            data = json.loads(text)
        except (ValueError, RecursionError):
            raise RosterError("not JSON (a roster file is written by `mpc-net roster`)") from None
        if not isinstance(data, dict) or data.get("mpc-net-roster") != ROSTER_FORMAT:
            raise RosterError(f"not an mpc-net roster (no \"mpc-net-roster\": {ROSTER_FORMAT})")
        parties = data.get("parties")
        if not isinstance(parties, list) or not all(isinstance(p, dict) for p in parties):
            raise RosterError("\"parties\" must be a list of {\"key\": ..., \"name\": ...}")
        keys = [decode_public_key(p.get("key")) for p in parties]
        return cls.of(keys, [p.get("name", "") for p in parties])

    def to_json(self) -> str:
        return json.dumps(self._document(), indent=2) + "\n"

    @property
    def session_id(self) -> bytes:
        """SHA-256 of the canonical roster: equal rosters, equal ids, whatever the file layout."""
        canonical = json.dumps(self._document(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).digest()

    def __len__(self) -> int:
        return len(self.keys)

    def index_of(self, key: bytes) -> int | None:
        return self.keys.index(key) if key in self.keys else None

    def label(self, pid: int) -> str:
        return f"party {pid} ({self.names[pid]})" if self.names[pid] else f"party {pid}"

    def _document(self) -> dict:
        return {"mpc-net-roster": ROSTER_FORMAT,
                "parties": [{"key": encode_public_key(k), "name": n}
                            for k, n in zip(self.keys, self.names, strict=True)]}


CHECK_NONCE_BYTES = 32
CHECK_CODE_DIGITS = 16  # about 53 bits


def check_commitment(pid: int, nonce: bytes) -> bytes:
    """What a party commits to before anyone reveals: its check-code nonce."""
    return hashlib.sha256(b"mpc-net/check-commit/v1" + struct.pack(">H", pid) + nonce).digest()


def short_authentication_string(session_id: bytes, nonces: list[bytes]) -> str:
    """The check code of a run: sixteen digits that people read to each other.

    It covers the roster each party holds and a fresh nonce of every party, exchanged by commit
    then reveal (as ZRTP does): each party reveals its nonce only after it holds everybody's
    commitment and its roster, so whoever relays them has fixed everything it substitutes
    before the nonce that decides the code is known. Equal codes despite different rosters then
    take luck of 10**-16 (2**-53) per run, and no precomputation helps; a fixed code of a roster
    would fall to a birthday search instead.
    """
    digest = hashlib.sha256(b"mpc-net/check-code/v2" + session_id + b"".join(nonces)).digest()
    digits = f"{int.from_bytes(digest[:8], 'big') % 10**CHECK_CODE_DIGITS:0{CHECK_CODE_DIGITS}d}"
    return "-".join(digits[i:i + 4] for i in range(0, CHECK_CODE_DIGITS, 4))


def fingerprint_digest(fingerprints: str) -> bytes:
    return hashlib.sha256(fingerprints.encode()).digest()


def program_hash(source: bytes) -> bytes:
    """SHA-256 of a program's text, for the handshake: equal for copies of one program.

    The text is normalised first, so that what editors and file transfers change does not count:
    line endings become LF (CRLF and lone CR alike), a leading UTF-8 byte order mark is dropped,
    and trailing newlines become exactly one (none for an empty text). Nothing else changes:
    other whitespace, comments and encodings count. So for a file with LF line endings, no BOM
    and one final newline, this is what `sha256sum` prints. The program's arguments are not
    part of it: they may hold a party's private input.
    """
    text = source.removeprefix(b"\xef\xbb\xbf").replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    text = text.rstrip(b"\n")
    return hashlib.sha256(text + b"\n" if text else b"").digest()


def short_hash(digest: bytes) -> str:
    """A program hash as people see it: its first hex digits."""
    return digest.hex()[:SHORT_HASH_DIGITS]


class Hello(Value):
    """First handshake message. Only the signature that follows proves anything; the claims
    here let a refusal say precisely what is wrong."""

    session_id: bytes
    pid: int
    public_key: bytes
    own_fingerprints: bytes  # digest of the sender's certificate fingerprints, as it sees them
    peer_fingerprints: bytes  # digest of the receiver's fingerprints, as the sender sees them
    mix32_64bit: bool  # whether the sender runs MPyC with --mix32-64bit; all parties must agree
    program_hash: bytes = NO_PROGRAM  # program_hash() of the program text the sender runs

    # The version byte comes first in every version, so any peer can name the one it got.
    _LAYOUT = struct.Struct(f">B{DIGEST_BYTES}sH{KEY_BYTES}s"
                            f"{DIGEST_BYTES}s{DIGEST_BYTES}s?{DIGEST_BYTES}s")
    VERSION = HANDSHAKE_VERSION

    def encode(self) -> bytes:
        return self._LAYOUT.pack(self.VERSION, self.session_id, self.pid, self.public_key,
                                 self.own_fingerprints, self.peer_fingerprints,
                                 self.mix32_64bit, self.program_hash)

    @classmethod
    def decode(cls, body: bytes) -> Hello:
        if body and body[0] != cls.VERSION:
            raise AuthError(f"unsupported-version: it speaks handshake version {body[0]}, we "
                            f"speak version {cls.VERSION}; all parties need the same mpc-net "
                            "handshake version (update the older one)")
        if len(body) != cls._LAYOUT.size:
            raise AuthError("its handshake message is malformed")
        _, *fields = cls._LAYOUT.unpack(body)
        return cls(*fields)


class ChannelView(Value):
    """What one side knows of a channel before the handshake."""

    roster: Roster
    room: str
    pid: int
    peer_pid: int
    local_fingerprints: str  # from our local description
    remote_fingerprints: str  # from the remote description, which DTLS checked
    mix32_64bit: bool = True  # MPyC's portable mode, which 32-bit (browser) parties need
    program_hash: bytes = NO_PROGRAM  # of the program we run
    # Whether we take a peer that runs another program (--allow-different-programs): our own
    # choice only, so that nobody else can make us compute something other than we agreed.
    allow_different_programs: bool = False

    def hello(self, public_key: bytes) -> Hello:
        return Hello(self.roster.session_id, self.pid, public_key,
                     fingerprint_digest(self.local_fingerprints),
                     fingerprint_digest(self.remote_fingerprints), self.mix32_64bit,
                     self.program_hash)

    def program_difference(self, hello: Hello) -> str | None:
        """How the peer's program differs from ours, in words naming both hashes; None: same."""
        if hello.program_hash == self.program_hash:
            return None
        return (f"it runs program {short_hash(hello.program_hash)}, we run "
                f"{short_hash(self.program_hash)} (SHA-256 of the program texts)")

    def check_hello(self, hello: Hello) -> None:
        """Refuse a peer's hello that cannot lead to a valid signature, saying why."""
        if hello.session_id != self.roster.session_id:
            raise AuthError("the rosters differ (its session id "
                            f"{hello.session_id.hex()[:16]}, ours "
                            f"{self.roster.session_id.hex()[:16]}); "
                            "all parties must use the same roster file")
        if hello.pid != self.peer_pid:
            raise AuthError(f"it claims to be party {hello.pid}")
        if hello.public_key != self.roster.keys[self.peer_pid]:
            holder = self.roster.index_of(hello.public_key)
            if holder is None:
                raise AuthError("its key is not in the roster")
            raise AuthError(f"it holds the key of party {holder}, not of party {self.peer_pid}")
        if hello.mix32_64bit != self.mix32_64bit:
            theirs, ours = ("with", "without") if hello.mix32_64bit else ("without", "with")
            raise AuthError(f"it runs MPyC {theirs} --mix32-64bit and we run {ours}: all parties "
                            "must agree (browser parties need it; only rooms of native parties "
                            "may leave it out, with --native-only)")
        difference = self.program_difference(hello)
        if difference is not None and not self.allow_different_programs:
            raise AuthError(f"program-mismatch: {difference}; all parties must run the same "
                            "program (a room that agrees to differ: each party that accepts "
                            "another's program passes --allow-different-programs)")
        if (hello.own_fingerprints != fingerprint_digest(self.remote_fingerprints)
                or hello.peer_fingerprints != fingerprint_digest(self.local_fingerprints)):
            raise AuthError("fingerprint mismatch: the DTLS certificates differ between its "
                            "view and ours, so something in between (the room server or the "
                            "network) replaced them")

    def statement(self, signer: int, program: bytes) -> bytes:
        """The bytes party `signer` (we or the peer) signs on this channel, with the program hash
        it states: equal on both sides only without a middle. The signer's own view of the
        fingerprints is signed, so the verifier's fresh certificate is in what it checks."""
        mine = signer == self.pid
        fp_local = fingerprint_digest(self.local_fingerprints)
        fp_remote = fingerprint_digest(self.remote_fingerprints)
        fp_signer, fp_receiver = (fp_local, fp_remote) if mine else (fp_remote, fp_local)
        receiver = self.peer_pid if mine else self.pid
        room = self.room.encode()
        return b"".join([
            STATEMENT_LABEL, self.roster.session_id, struct.pack(">H", len(room)), room,
            struct.pack(">HH", signer, receiver), fp_signer, fp_receiver, program,
            struct.pack(">?", self.mix32_64bit)])
