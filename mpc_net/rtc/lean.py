"""What aiortc and websockets import that a party's data channels never use: imported lean.

Within `lean_imports` (on aiortc 1.16 / aioice 0.13; rtc/patches.py has mpc-net's other changes
to them), modules imported for the first time load when first used, or never:

- aioice's mDNS module (with dnspython), which only a peer with mDNS candidates (a browser
  hiding its addresses) needs, loads when a candidate's name is one; aioice imports ifaddr,
  which only a party without --local-address needs; websockets
  imports importlib.metadata (with email and zipfile) for a version string that a release never
  reads, and urllib.request (with http.client and email) for a proxy lookup that a party makes
  only where a proxy may be configured (native/signaling.py); pyOpenSSL imports calendar for
  X509Store.set_time only. These load when first used.
- aiortc's media modules (media tracks, codecs, RTP sender and receiver) import PyAV, the
  largest import of all, which a data channel never touches: they are stand-ins, so PyAV is
  never imported, as are aiortc's statistics (getStats); each fails with a clear error if ever
  used. pylibsrtp, which aiortc's DTLS transport keys on every connection for RTP that
  data channels never carry, is a stand-in that refuses every packet, and aiortc.rtp, which
  parses RTP and RTCP once unprotected, one that never parses them. Only aiortc holds the
  stand-ins: a later `import aiortc.mediastreams`, `import aiortc.codecs` or `import pylibsrtp`
  (by the MPyC program, say) loads the real one.
- cryptography's X.509 name module compiles, at import, a regular expression for names written
  as text, which DTLS certificates never need (its Unicode ranges took 15 ms, as much as the
  rest of the module): its expressions compile when first used. Its general names take
  `parseaddr` from email.utils (with most of email) for RFC822Name values, which DTLS
  certificates never have: email.utils loads when it is first called. Its serialization package
  re-exports its SSH formats (with its ciphers): they load when one of their names is first
  read (native/identity.py imports it within, too).
- pyOpenSSL takes only `deprecated` from typing_extensions: mpc-net's stand-in does as it does.
- aiortc's RTP parameters, SCTP stream resets, SSRC descriptions and ICE servers, and websockets'
  proxy settings: 21 dataclasses of which a data channel makes 5 (each on every connection).
  Each is made a dataclass (its methods compiled) when first used.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.machinery
import importlib.util
import sys
import warnings
from collections.abc import Iterator, Sequence
from types import ModuleType
from typing import Any

from .compiled import cached_methods
from .lazy import LazyDataclassesLoader, LazyNamesLoader, LazyPatternsLoader

# Modules (and their submodules) that, when aiortc's or websockets' import brings them in, are
# loaded on first use only.
# (calendar: pyOpenSSL's only for X509Store.set_time.)
DEFERRED_MODULES = ("ifaddr", "importlib.metadata", "urllib.request", "calendar")
# Packages and modules that aiortc's import gets stand-ins for: its own media code (media
# tracks, codecs, RTP sender and receiver: all that imports PyAV) that only audio and video
# sections and addTrack lead to (a remote description with one is refused before aiortc sees
# it: sdp.check_media_sections), and its statistics, which only RTCPeerConnection.getStats makes
# (mpc-net's native peers never call it).
STOOD_IN_PACKAGES = ("aiortc.mediastreams", "aiortc.codecs", "aiortc.rtcrtpreceiver",
                     "aiortc.rtcrtpsender", "aiortc.rtcrtptransceiver", "aiortc.events",
                     "aiortc.stats")
# aiortc's DTLS transport keys SRTP (pylibsrtp, libsrtp with its own OpenSSL) on every
# connection, for RTP that a data channel never carries, and parses RTP and RTCP (aiortc.rtp)
# only after SRTP has unprotected them: both get stand-ins of their own (_SrtpStandIn,
# _RtpStandIn).
SRTP_PACKAGE = "pylibsrtp"
RTP_MODULE = "aiortc.rtp"
# Modules that a module imported within takes functions from by name, and nothing else: those
# functions load the module when first called (a forwarding stand-in, _Forwarding).
# cryptography.x509's general names parse RFC822Name values with email.utils (with calendar and
# most of email), a name type that DTLS certificates never have.
# pyOpenSSL takes only `deprecated` from typing_extensions (for Python before 3.13): it gets
# mpc-net's own (_Deprecated), and typing_extensions loads when another name is read.
# aioice.ice asks aioice.mdns (with dnspython) whether each remote candidate's name is an mDNS
# one, and annotates with its protocol class: _Mdns answers, and loads it for a name that may be.
FORWARDED_FUNCTIONS = {"email.utils": ("parseaddr",), "typing_extensions": (), "aioice.mdns": ()}
# Packages whose names taken from one submodule load it when first read (PEP 562's module
# __getattr__): cryptography's serialization re-exports its SSH key and certificate formats
# (with its ciphers, for encrypted SSH keys), which mpc-net's PEM keys and DTLS never use.
LAZY_NAME_SUBMODULES = {"cryptography.hazmat.primitives.serialization":
                        "cryptography.hazmat.primitives.serialization.ssh"}
# Modules whose own regular expressions compile when first used (only through their methods:
# such a pattern is no re.Pattern). tests/test_aiortc_canary.py checks that they still parse.
# aiortc's ICE transport parses STUN and TURN URLs (only with --ice) with its own.
LAZY_PATTERN_MODULES = ("cryptography.x509.name", "aiortc.rtcicetransport")
# Modules whose dataclasses become dataclasses when first used (each compiles three or four
# methods with exec): most of those of aiortc's RTP parameters, SCTP transport (stream resets),
# SDP (SSRC descriptions) and configuration (ICE servers, only with --ice), and websockets'
# proxy settings, are never made on a data channel's way. The others of aiortc and websockets
# are made on every connection, so it would only move them.
LAZY_DATACLASS_MODULES = ("aiortc.rtcrtpparameters", "aiortc.rtcsctptransport", "aiortc.sdp",
                          "aiortc.rtcconfiguration", "websockets.proxy")


@contextlib.contextmanager
def lean_imports() -> Iterator[None]:
    """Within: DEFERRED_MODULES imported for the first time load when first used, those of
    STOOD_IN_PACKAGES not yet imported are stand-ins, those of FORWARDED_FUNCTIONS forward
    (both out of sys.modules after), LAZY_PATTERN_MODULES compile their regular expressions
    and LAZY_DATACLASS_MODULES generate their dataclasses when first used (rtc/lazy.py); the
    methods of the others' dataclasses come compiled from a cache (rtc/compiled.py).

    The standard library's LazyLoader: such a module runs its code when an attribute of it is
    first read, then is an ordinary module, the same to everyone who imports it later.
    """
    finder = _LeanFinder()
    sys.meta_path.insert(0, finder)
    try:
        with cached_methods():
            yield
    finally:
        sys.meta_path.remove(finder)
        # type(), not isinstance(), which would load a lazy module (and change sys.modules).
        stand_ins = (_StandIn, _Forwarding)
        for name in [n for n, m in sys.modules.items() if issubclass(type(m), stand_ins)]:
            del sys.modules[name]


class _LeanFinder:
    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if _within(fullname, STOOD_IN_PACKAGES) or fullname in _OWN_STAND_INS:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        if fullname in FORWARDED_FUNCTIONS and fullname not in _Forwarding.loading:
            return importlib.machinery.ModuleSpec(fullname, self)
        lazy_patterns = fullname in LAZY_PATTERN_MODULES
        lazy_names = fullname in LAZY_NAME_SUBMODULES
        lazy_classes = fullname in LAZY_DATACLASS_MODULES
        if not (lazy_patterns or lazy_names or lazy_classes
                or _within(fullname, DEFERRED_MODULES)):
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        if lazy_classes:
            spec.loader = LazyDataclassesLoader(spec.loader)
        elif lazy_patterns:
            spec.loader = LazyPatternsLoader(spec.loader)
        elif lazy_names:
            spec.loader = LazyNamesLoader(spec.loader, LAZY_NAME_SUBMODULES[fullname])
        else:
            spec.loader = importlib.util.LazyLoader(spec.loader)
        return spec

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        if spec.name in FORWARDED_FUNCTIONS:
            return _FORWARDING_KINDS.get(spec.name, _Forwarding)(spec.name)
        return _OWN_STAND_INS.get(spec.name, _StandIn)(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        pass


def _within(fullname: str, names: tuple[str, ...]) -> bool:
    return any(fullname == name or fullname.startswith(name + ".") for name in names)


class _StandIn(ModuleType):
    """A module of a stood-in package: each name read from it is a class that cannot be made."""

    def __getattr__(self, name: str) -> type:
        if name.startswith("__"):
            raise AttributeError(name)
        module = self.__name__

        def unavailable(cls: type, *args: object, **kwargs: object) -> None:
            raise RuntimeError(f"{module}.{name}: mpc-net imports aiortc without {module}, "
                               "which its data channels never use")

        # Made, called or indexed (aiortc's CODECS[kind]): the same error.
        stand_in = type(name, (), {"__module__": module, "__new__": unavailable,
                                   "__class_getitem__": classmethod(unavailable)})
        setattr(self, name, stand_in)
        return stand_in


class _Forwarding(ModuleType):
    """A module whose FORWARDED_FUNCTIONS load it when first called; reading any other name
    loads it at once. Either way the module itself then takes its place in sys.modules. Not
    dunder names: the import system probes `__path__` on every `from ... import`."""

    loading: set[str] = set()  # modules being loaded: the finder leaves them to the others

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if name not in FORWARDED_FUNCTIONS[self.__name__]:
            return getattr(self._module(), name)

        def forward(*args: Any, **kwargs: Any) -> Any:
            return getattr(self._module(), name)(*args, **kwargs)

        forward.__name__ = forward.__qualname__ = name
        setattr(self, name, forward)
        return forward

    def _module(self) -> ModuleType:
        if sys.modules.get(self.__name__) is self:
            del sys.modules[self.__name__]
        _Forwarding.loading.add(self.__name__)
        try:
            return importlib.import_module(self.__name__)
        finally:
            _Forwarding.loading.discard(self.__name__)


class _Deprecated:
    """typing_extensions.deprecated (PEP 702), for pyOpenSSL's deprecated functions and classes:
    a call, or making or subclassing the class, warns from the caller's line, as with it."""

    def __init__(self, message: str, /, *, category: type[Warning] | None = DeprecationWarning,
                 stacklevel: int = 1) -> None:
        self.message, self.category, self.stacklevel = message, category, stacklevel

    def __call__(self, deprecated: Any, /) -> Any:
        deprecated.__deprecated__ = message = self.message
        if self.category is None:
            return deprecated
        # A C function adds no frame: stacklevel counts from the wrapper's caller.
        warn = functools.partial(warnings.warn, message, self.category, self.stacklevel + 1)
        if not isinstance(deprecated, type):
            @functools.wraps(deprecated)
            def call(*args: Any, **kwargs: Any) -> Any:
                warn()
                return deprecated(*args, **kwargs)

            call.__deprecated__ = message  # type: ignore[attr-defined]
            return call
        make, subclassed = deprecated.__new__, deprecated.__dict__.get("__init_subclass__")

        def new(cls: type, /, *args: Any, **kwargs: Any) -> Any:
            if cls is deprecated:
                warn()
            if make is object.__new__ and cls.__init__ is not object.__init__:
                return make(cls)  # object.__new__ takes no more arguments than that
            return make(cls, *args, **kwargs)

        def init_subclass(cls: type, **kwargs: Any) -> None:
            warn()
            if subclassed is None:
                super(deprecated, cls).__init_subclass__(**kwargs)
            else:
                subclassed.__get__(None, cls)(**kwargs)

        deprecated.__new__ = staticmethod(functools.wraps(make)(new))
        deprecated.__init_subclass__ = classmethod(init_subclass)
        return deprecated


class _TypingExtensions(_Forwarding):
    deprecated = _Deprecated


class _Mdns(_Forwarding):
    """aioice.mdns for aioice.ice: its protocol class, read for an annotation at import, is a
    placeholder then; a name that does not end in ".local" is no mDNS name (aioice's pattern
    ends in it, and "$" matches before a last newline too)."""

    def is_mdns_hostname(self, name: str) -> bool:
        return name.endswith((".local", ".local\n")) and self._module().is_mdns_hostname(name)

    @property
    def MDnsProtocol(self) -> type:  # noqa: N802 (aioice's name)
        if any(type(finder) is _LeanFinder for finder in sys.meta_path):
            return type("MDnsProtocol", (), {"__module__": self.__name__})
        return self._module().MDnsProtocol


_FORWARDING_KINDS = {"typing_extensions": _TypingExtensions, "aioice.mdns": _Mdns}


class _SrtpError(Exception):
    pass


class _SrtpPolicy:
    # libsrtp's values, as pylibsrtp's Policy has them (tests/test_aiortc_canary.py compares).
    SRTP_PROFILE_AES128_CM_SHA1_80 = 1
    SRTP_PROFILE_AES128_CM_SHA1_32 = 2
    SRTP_PROFILE_AEAD_AES_128_GCM = 7
    SRTP_PROFILE_AEAD_AES_256_GCM = 8
    SSRC_UNDEFINED, SSRC_SPECIFIC, SSRC_ANY_INBOUND, SSRC_ANY_OUTBOUND = 0, 1, 2, 3

    def __init__(self, key: bytes | None = None, ssrc_type: int = 0, ssrc_value: int = 0,
                 srtp_profile: int = 1) -> None:
        pass  # every profile is available, as in pylibsrtp's wheels: the handshake offers all


class _SrtpSession:
    def __init__(self, policy: _SrtpPolicy | None = None) -> None:
        pass

    def _refuse(self, *args: object) -> None:
        raise _SrtpError("mpc-net imports aiortc without SRTP, which data channels never use")

    # aiortc drops a packet whose unprotect fails, as one that does not authenticate.
    protect = unprotect = protect_rtcp = unprotect_rtcp = add_stream = remove_stream = _refuse


class _SrtpStandIn(_StandIn):
    """pylibsrtp for aiortc's DTLS transport: it asks which protection profiles exist, at import,
    and keys a session each way once connected; the keys go nowhere, and every RTP or RTCP
    packet is refused (pylibsrtp.Error)."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.Error, self.Policy, self.Session = _SrtpError, _SrtpPolicy, _SrtpSession


class _HeaderExtensionsMap:
    def configure(self, parameters: object) -> None:
        raise RuntimeError(f"{RTP_MODULE}.HeaderExtensionsMap: mpc-net imports aiortc without "
                           f"{RTP_MODULE}, which its data channels never use")


class _RtpStandIn(_StandIn):
    """aiortc.rtp for aiortc's DTLS transport: each one makes a header extension map (configured
    only by RTP senders and receivers), and tells SRTCP from SRTP by the packet type, as
    aiortc.rtp does, for the SRTP stand-in to refuse either; RTP and RTCP are never parsed."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.HeaderExtensionsMap = _HeaderExtensionsMap

    @staticmethod
    def is_rtcp(packet: bytes) -> bool:
        return len(packet) >= 2 and 192 <= packet[1] <= 208  # tests/test_aiortc_canary.py


_OWN_STAND_INS: dict[str, type[_StandIn]] = {SRTP_PACKAGE: _SrtpStandIn, RTP_MODULE: _RtpStandIn}
