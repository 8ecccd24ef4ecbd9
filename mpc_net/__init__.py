"""mpc-net: MPyC secure multiparty computation over WebRTC data channels.

`mpc_net.setup(...)` makes this process's MPyC runtime a party of a room (see mpc_net.api);
importing mpc_net itself loads neither MPyC nor aiortc.
"""

__version__ = "0.1.0"

__all__ = ["ConfigError", "setup"]


def __getattr__(name: str):
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'mpc_net' has no attribute {name!r}")
