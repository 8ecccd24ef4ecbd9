"""Browser parties: the Pyodide side of the web app (identity, signaling, running a demo).

Only `demos` is importable outside Pyodide; the other modules use the browser through
`pyodide.ffi` and `js`.
"""
