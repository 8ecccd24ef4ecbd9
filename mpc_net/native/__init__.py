"""Native parties: aiortc peer connections (peer.py), the websockets signaling client
(signaling.py), identity key and roster files (identity.py) and running a party in this process
(party.py). browser/ holds the same roles under the same names for Pyodide."""
