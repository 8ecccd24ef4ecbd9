"""Workload: bulk transfer with long secure vectors (numpy).

Party 0 and the last party each secret-share a vector of N integers; the parties then compute
their elementwise product (one resharing of N field elements between every pair of parties)
and their dot product, and open a checksum of the product and the dot product. Few rounds,
many bytes: the pattern of MPyC programs on arrays (np_* demos, neural network inference).

Run: python benchmarks/bulk.py -M3 [N]
"""

import argparse

import numpy as np
from mpyc.runtime import mpc

secint = mpc.SecInt(32)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Long secure vectors: products and a dot product.")
    parser.add_argument("N", nargs="?", type=int, default=20000,
                        help="vector length (default %(default)s)")
    return parser.parse_args()


def vectors(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Public formulas for both inputs, so every party can check the result in the clear."""
    k = np.arange(n, dtype=np.int64)
    return (7919 * k + 13) % 1009 - 504, (104729 * k + 71) % 1013 - 506


async def main(n: int) -> None:
    await mpc.start()
    a, b = vectors(n)
    last = len(mpc.parties) - 1
    # Only the sender's values count; the others pass an array of the same shape.
    x = mpc.input(secint.array(a), senders=0)
    y = mpc.input(secint.array(b), senders=last)
    product = x * y  # elementwise: N multiplications in one round
    weights = secint.array(np.arange(n, dtype=np.int64) % 3 + 1)
    checksum = mpc.np_sum(product * weights)
    dot = x @ y
    checksum, dot = await mpc.output([checksum, dot])
    await mpc.shutdown()
    expected = (a * b * (np.arange(n) % 3 + 1)).sum(), (a * b).sum()
    print(f"Elementwise and dot product of two secret vectors of length {n}")
    print(f"Checksum: {checksum}; dot product: {dot}")
    print(f"Matches the plaintext computation: {(checksum, dot) == tuple(map(int, expected))}")


if __name__ == "__main__":
    mpc.run(main(parse_args().N))
