"""Private mean and variance of the parties' inputs.

Every party i secret-shares one integer x_i. With secure integer arithmetic
only, the parties compute and reveal

    S = x_0 + ... + x_{m-1}                      (the sum)
    D = m * (x_0^2 + ... + x_{m-1}^2) - S^2      (m^2 times the variance)

and nothing else about the individual inputs. Everything else is computed in
the clear with exact fractions:

    mean                = S / m
    population variance = D / m^2
    sample variance     = D / (m (m - 1))       (for m >= 2)

No secure fixed-point arithmetic is used, so the printed results are exact and
the same for every run and every party.

Party i uses the i-th value (modulo the number of values) given on the command
line, or by default x_i = 25 + (17 i mod 40), which gives 25, 42, 59, 36, 53 for
parties 0..4.

Run it, for example, with:

    python demos/stats.py -M3                  # default inputs 25, 42, 59
    python demos/stats.py -M5 10 -3 7 22 5
    mpc-net run demos/stats.py -M3
"""

import argparse
import math
import sys
from fractions import Fraction

from mpyc.runtime import mpc

MAX_ABS = 10**9  # keeps m * sum(x^2) far below the size of the 64-bit secint field
DIGITS = 6


def default_input(i):
    return 25 + (17 * i) % 40


def parse_args():
    parser = argparse.ArgumentParser(
        description="Compute the mean and variance of one private integer per party.",
        epilog="MPyC options such as -M3 (number of parties) are handled by MPyC itself.",
    )
    parser.add_argument(
        "values",
        nargs="*",
        type=int,
        metavar="x",
        help="integer inputs: party i uses the i-th value, modulo the number "
        "of values (default: x_i = 25 + (17 i mod 40))",
    )
    args, unknown = parser.parse_known_args()
    if unknown:
        print(f"ignoring unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
    for x in args.values:
        if abs(x) > MAX_ABS:
            parser.error(f"input {x} outside the range -{MAX_ABS}..{MAX_ABS}")
    return args


def decimal(q):
    """Exact fraction q rounded to DIGITS decimals (half to even), as a string."""
    n = round(q * 10**DIGITS)
    sign = "-" if n < 0 else ""
    whole, frac = divmod(abs(n), 10**DIGITS)
    return f"{sign}{whole}.{frac:0{DIGITS}d}"


def show(q):
    """Exact fraction q, followed by its decimal approximation if q is not an integer."""
    if q.denominator == 1:
        return str(q.numerator)
    return f"{q} (about {decimal(q)})"


async def main():
    args = parse_args()
    secint = mpc.SecInt(64)
    m = len(mpc.parties)

    await mpc.start()

    if args.values:
        x = args.values[mpc.pid % len(args.values)]
    else:
        x = default_input(mpc.pid)
    xs = mpc.input(secint(x))  # one secure input per party, each from its owner
    s = mpc.sum(xs)
    d = m * mpc.in_prod(xs, xs) - s * s
    s, d = await mpc.output([s, d])

    await mpc.shutdown()

    mean = Fraction(s, m)
    variance = Fraction(d, m * m)
    print(f"Statistics of {m} private inputs (one per party)")
    print(f"Sum: {s}")
    print(f"Mean: {show(mean)}")
    print(f"Population variance: {show(variance)}")
    print(f"Population standard deviation: about {math.sqrt(variance):.{DIGITS}f}")
    if m >= 2:
        print(f"Sample variance: {show(Fraction(d, m * (m - 1)))}")


if __name__ == "__main__":
    mpc.run(main())
