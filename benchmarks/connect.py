"""Workload: connect all parties, then shut down; nothing else.

The time from MPyC's "Start MPyC runtime" to "All m parties connected" log lines is the cost
of building the mesh (plus waiting for parties that start later).

Run: python benchmarks/connect.py -M8
"""

from mpyc.runtime import mpc

mpc.run(mpc.start())
mpc.run(mpc.shutdown())
