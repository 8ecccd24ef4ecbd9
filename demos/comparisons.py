"""Stress workload: many secure integer comparisons in one go.

Party 0 secret-shares a list a of N integers and the last party secret-shares
a list b of N integers; both lists come from a fixed public formula, so the
result can be checked in the clear afterwards. All N secure comparisons
a[k] < b[k] are then started at once. They run concurrently, which puts a
lot of small MPyC messages in flight between all parties at the same time.
Only the number of true comparisons is revealed.

Run it, for example, with:

    python demos/comparisons.py -M3            # default N, 3 parties over TCP
    python demos/comparisons.py -M5 500        # N = 500
    mpc-net run demos/comparisons.py -M3

Printed result lines (identical for every party and every run):

    Secure comparisons a[k] < b[k] for N = ...
    Number of true comparisons: ...
    Matches the plaintext computation: True
"""

import argparse
import sys

from mpyc.runtime import mpc

DEFAULT_N = 2000
BIT_LENGTH = 32
MODULUS = 10007  # inputs lie in [-5003, 5003]


def a_value(k):
    """Public formula for the k-th input of party 0."""
    return (7919 * k + 13) % MODULUS - MODULUS // 2


def b_value(k):
    """Public formula for the k-th input of the last party."""
    return (104729 * k + 71) % MODULUS - MODULUS // 2


def parse_args():
    parser = argparse.ArgumentParser(
        description="Run N secure comparisons at once and count how many are true.",
        epilog="MPyC options such as -M3 (number of parties) are handled by MPyC itself.",
    )
    parser.add_argument(
        "N",
        nargs="?",
        type=int,
        default=DEFAULT_N,
        help=f"number of secure comparisons (default {DEFAULT_N})",
    )
    args, unknown = parser.parse_known_args()
    if unknown:
        print(f"ignoring unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
    if args.N < 1:
        parser.error(f"N must be a positive integer, got {args.N}")
    return args


async def main():
    args = parse_args()
    n = args.N
    secint = mpc.SecInt(BIT_LENGTH)
    m = len(mpc.parties)
    first, last = 0, m - 1

    async with mpc:
        # Only the designated sender's values matter; the others pass placeholders.
        a = [secint(a_value(k) if mpc.pid == first else 0) for k in range(n)]
        b = [secint(b_value(k) if mpc.pid == last else 0) for k in range(n)]
        a = mpc.input(a, senders=first)
        b = mpc.input(b, senders=last)
        less = [x < y for x, y in zip(a, b, strict=True)]  # all N comparisons run concurrently
        count = await mpc.output(mpc.sum(less))

    expected = sum(a_value(k) < b_value(k) for k in range(n))
    print(f"Secure comparisons a[k] < b[k] for N = {n}")
    print(f"Number of true comparisons: {count}")
    print(f"Matches the plaintext computation: {count == expected}")


if __name__ == "__main__":
    mpc.run(main())
