"""Workload: a mix of bulk arithmetic on vectors and rounds of comparisons.

Every party secret-shares a vector of N fixed-point numbers (numpy). The parties compute
per-position totals, a weighted score per position (elementwise secure products with
truncation), the dot product of two parties' vectors, then the maximum score and its position
(a tree of secure comparisons) and the top K scores in order (a secure sort): some large
messages, then many small sequential rounds, as in a data analysis pipeline.

Run: python benchmarks/mix.py -M3 [N] [--top K]
"""

import argparse

import numpy as np
from mpyc.runtime import mpc

secfxp = mpc.SecFxp(32)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Vectors, then comparisons and a sort.")
    # Positional: MPyC reads sys.argv too, and would take "--n" for an abbreviation of its own.
    parser.add_argument("N", nargs="?", type=int, default=1000,
                        help="vector length (default %(default)s)")
    parser.add_argument("--top", type=int, default=8, help="K scores to sort (default %(default)s)")
    return parser.parse_args()


def inputs(pid: int, n: int) -> np.ndarray:
    """Public formula for party pid's vector, so the result can be checked in the clear."""
    k = np.arange(n)
    return ((37 * pid + 7919 * k + 13) % 1009) / 100 - 5


async def main(n: int, top: int) -> None:
    await mpc.start()
    m = len(mpc.parties)
    vectors = [mpc.input(secfxp.array(inputs(mpc.pid, n)), senders=i) for i in range(m)]
    totals = vectors[0]
    for v in vectors[1:]:
        totals = totals + v
    scores = totals * vectors[0]  # N secure fixed-point products, one batch
    dot = vectors[0] @ vectors[-1]
    head = [scores[k] for k in range(4 * top)]  # comparisons on a slice keep the run short
    best, best_at = mpc.max(head), mpc.argmax(head)[0]
    ranked = mpc.sorted(head[:top])
    dot, best, best_at = await mpc.output([dot, best, best_at])
    ranked = await mpc.output(ranked)
    await mpc.shutdown()
    plain = [inputs(i, n) for i in range(m)]
    plain_scores = sum(plain) * plain[0]
    plain_dot = float(plain[0] @ plain[-1])
    print(f"Vectors of length {n} from {m} parties; maximum of {4 * top} scores; top {top} sorted")
    print(f"Dot product: {dot:.2f}; maximum score {best:.2f} at position {int(best_at)}")
    print("Sorted: " + " ".join(f"{float(r):.2f}" for r in ranked))
    close = abs(dot - plain_dot) < 1 and int(best_at) == int(np.argmax(plain_scores[:4 * top]))
    print(f"Matches the plaintext computation: {close}")


if __name__ == "__main__":
    options = parse_args()
    mpc.run(main(options.N, options.top))
