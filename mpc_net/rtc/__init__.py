"""What both peer-connection backends (native/peer.py, browser/peer.py) share (events.py), and
every change to aiortc and aioice, applied once per process (patches.py; sctp.py, acks.py,
receive.py and send.py on each association, with the pure recovery.py deciding its window), and
how they are imported (lean.py, with lazy.py)."""
