"""Browser parties: the Pyodide side of the web app, with the roles of native/ under the same
names (peer.py, signaling.py, identity.py, party.py) and the page's own parts (page.py, the
entry points its JavaScript calls; status.py, demos.py, candidates.py, jsffi.py, loop.py).

Only `demos`, `candidates` and `loop` are importable outside Pyodide; the other modules use the
browser through `pyodide.ffi` and `js`.
"""
