"""mpc-net: MPyC secure multiparty computation over WebRTC data channels."""

__version__ = "0.1.0"
