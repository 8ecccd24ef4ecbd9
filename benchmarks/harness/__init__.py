"""The bench harness: MPyC's own TCP transport and mpc-net side by side, on this machine.

Everything runs as separate processes on loopback, interleaved per repetition (TCP, mpc-net,
TCP, mpc-net, ...): on a shared, noisy machine the speed drifts by 2-3x over minutes, so only
runs made next to each other are compared. Each ratio is mpc-net / TCP per repetition, and the
tables give the median of those ratios with their range.

Two parts:
- programs (programs.py): our demos and the workloads in benchmarks/ run as
  `python PROGRAM -M m -B b` (MPyC over TCP, on a free range of ports) and
  `mpc-net run PROGRAM -M m` (local mode: real WebRTC between m processes); MPyC's own elapsed
  time (party 0's "Stop MPyC" line), the wall time of the whole run, and mpc-net's traffic from
  the run reports of its parties (`mpc-net run --stats-json`);
- transport (transport.py): ping-pong, throughput, small-message rate and memory
  (benchmarks/transport.py), and the time until all parties are connected
  (benchmarks/connect.py).

It lives in a checkout beside the package, not in it: `mpc-net bench` runs it from there, as
does `python benchmarks/bench.py`. Progress goes to stderr, the tables (Markdown) to stdout;
`--json FILE` keeps every figure.
"""

from .command import add_arguments, main, run

__all__ = ["add_arguments", "main", "run"]
