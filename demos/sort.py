"""Secure sorting of the union of the parties' private lists.

Every party i secret-shares a small list of integers. Only the lengths of the
lists are public. The parties sort the union of all lists obliviously with
mpc.sorted (a Batcher sorting network on secure integers: which input ends
up where stays secret) and then reveal the sorted list and its median.
For an even number of values the median is the mean of the two middle values.

Party i uses the i-th LIST argument (modulo the number of LIST arguments),
each a comma-separated list of integers, or by default the three values
(37 i + 23 j + 11) mod 100 for j = 0, 1, 2, so party 0 has 11,34,57,
party 1 has 48,71,94, party 2 has 85,8,31, party 3 has 22,45,68 and
party 4 has 59,82,5.

Run it, for example, with:

    python demos/sort.py -M3                  # default lists
    python demos/sort.py -M3 4,9,1 -7,3 12,-6,0,2
    mpc-net run demos/sort.py -M3
"""

import argparse
import re
import sys
from fractions import Fraction

from mpyc.runtime import mpc

DEFAULT_LENGTH = 3
MAX_LENGTH = 50  # values per party
MAX_ABS = 10**6  # keeps all differences well inside the 32-bit secure integers


def default_list(i):
    return [(37 * i + 23 * j + 11) % 100 for j in range(DEFAULT_LENGTH)]


def int_list(text):
    """Parse a comma-separated list of integers (argparse type)."""
    try:
        values = [int(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    if len(values) > MAX_LENGTH:
        raise argparse.ArgumentTypeError(f"more than {MAX_LENGTH} values in {text!r}")
    for v in values:
        if abs(v) > MAX_ABS:
            raise argparse.ArgumentTypeError(f"value {v} outside the range -{MAX_ABS}..{MAX_ABS}")
    return values


def parse_args():
    parser = argparse.ArgumentParser(
        description="Securely sort the union of private integer lists, one list per party.",
        epilog="MPyC options such as -M3 (number of parties) are handled by MPyC itself.",
    )
    parser.add_argument(
        "lists",
        nargs="*",
        type=int_list,
        metavar="LIST",
        help="comma-separated integers such as 4,9,1; party i uses the i-th LIST, "
        "modulo the number of LISTs (default: (37 i + 23 j + 11) mod 100 "
        f"for j < {DEFAULT_LENGTH})",
    )
    # A LIST starting with a minus sign, such as -6,0,2, would look like an option to argparse;
    # a leading space makes argparse treat it as a positional argument (int() ignores the space).
    argv = [" " + a if re.fullmatch(r"-\d[\d,-]*", a) else a for a in sys.argv[1:]]
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        print(f"ignoring unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
    return args


def median(values):
    """Median of a sorted list of integers, as an exact decimal string."""
    n = len(values)
    if n % 2:
        return str(values[n // 2])
    q = Fraction(values[n // 2 - 1] + values[n // 2], 2)  # an integer or an integer + 1/2
    return str(q) if q.denominator == 1 else str(float(q))  # float(q) is exact here


async def main():
    args = parse_args()
    secint = mpc.SecInt(32)
    m = len(mpc.parties)

    async with mpc:
        if args.lists:
            mine = args.lists[mpc.pid % len(args.lists)]
        else:
            mine = default_list(mpc.pid)
        # The list lengths are public; exchange them first so every party
        # knows how many secure values to expect from each other party.
        lengths = await mpc.transfer(len(mine))
        x = []
        for i, n in enumerate(lengths):
            values = mine if i == mpc.pid else [0] * n
            x.extend(mpc.input([secint(v) for v in values], senders=i))
        y = await mpc.output(mpc.sorted(x))

    print(
        f"Securely sorted {len(y)} values from {m} parties (list lengths: "
        f"{', '.join(map(str, lengths))})"
    )
    print(f"Sorted: {' '.join(map(str, y))}")
    print(f"Median: {median(y)}")


if __name__ == "__main__":
    mpc.run(main())
