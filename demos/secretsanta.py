"""Secret Santa: draw a uniformly random derangement of N participants securely.

Participant j gives a present to participant p[j], where p is a secret random
permutation of 0..N-1 without fixed points (nobody draws themselves).
The parties repeatedly draw a secret uniformly random permutation and jointly
test, without revealing anything else, whether it has a fixed point; the first
draw without fixed points is kept, which makes the result a uniformly random
derangement. Only "has a fixed point: yes/no" is revealed for each draw.

Participant j is looked after by party j mod m: that party alone learns p[j]
(via mpc.output with receivers) and keeps it to itself. Because the drawn
assignment is random, the program prints only deterministic checks, computed
securely on the secret assignment, so every party and every run prints the
same lines.

Run it, for example, with:

    python demos/secretsanta.py -M3            # 6 participants, 3 parties
    python demos/secretsanta.py -M5 10         # 10 participants, 5 parties
    mpc-net run demos/secretsanta.py -M3

Written in MPyC's synchronous style: mpc.run(...) at module level.
"""

import argparse
import logging
import sys

from mpyc.random import random_permutation
from mpyc.runtime import mpc

DEFAULT_N = 6
MAX_N = 100

parser = argparse.ArgumentParser(
    description="Securely draw a random Secret Santa assignment (a derangement).",
    epilog="MPyC options such as -M3 (number of parties) are handled by MPyC itself.",
)
parser.add_argument(
    "N",
    nargs="?",
    type=int,
    default=DEFAULT_N,
    help=f"number of participants, 2 <= N <= {MAX_N} (default {DEFAULT_N})",
)
args, unknown = parser.parse_known_args()
if unknown:
    print(f"ignoring unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
if not 2 <= args.N <= MAX_N:
    parser.error(f"N must be between 2 and {MAX_N}, got {args.N}")
N = args.N

secint = mpc.SecInt(16)
m = len(mpc.parties)

mpc.run(mpc.start())

# Draw secret random permutations until one has no fixed point.
# p has a fixed point iff the product of all p[j] - j is zero (a field has no zero divisors),
# so a single public zero test reveals exactly one bit per draw.
draws = 0
while True:
    draws += 1
    p = random_permutation(secint, range(N))
    has_fixed_point = mpc.run(mpc.is_zero_public(mpc.prod([p[j] - j for j in range(N)])))
    if not has_fixed_point:
        break
logging.info(f"derangement found after {draws} draw(s)")  # log line only: random count

# Independent checks on the secret assignment; only the aggregate results are revealed.
# 1. It is a permutation: every value v in 0..N-1 occurs among p[0], ..., p[N-1], that is,
#    the product of all p[j] - v is zero (for a permutation these tests all reveal True).
occurs = [mpc.is_zero_public(mpc.prod([p[j] - v for j in range(N)])) for v in range(N)]
# 2. It is a derangement: the number of fixed points p[j] == j is zero.
fixed_points = mpc.sum([mpc.eq(p[j], j) for j in range(N)])
n_fixed = mpc.run(mpc.output(fixed_points))
values_covered = sum(mpc.run(v) for v in occurs)

# Each party privately learns the recipients of the participants it looks after.
mine = {}
for j in range(N):
    recipient = mpc.output(p[j], receivers=j % m)
    if j % m == mpc.pid:
        mine[j] = recipient
mine = {j: mpc.run(r) for j, r in mine.items()}  # known to this party only, never printed
own_ok = all(0 <= r < N and r != j for j, r in mine.items())

mpc.run(mpc.shutdown())

print(
    f"Secret Santa for {N} people with {m} parties "
    f"(party j mod {m} learns the recipient of participant j)"
)
print(f"Drawn assignment is a permutation of 0..{N - 1}: {values_covered == N}")
print(f"Number of people who drew themselves: {n_fixed}")
print(f"Drawn assignment is a derangement: {values_covered == N and n_fixed == 0}")
print(f"Every party learned valid recipients for its own participants: {own_ok}")
