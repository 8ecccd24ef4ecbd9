"""Peer connection backends (aiortc natively, RTCPeerConnection in browsers)."""
