"""Sealed-bid second-price (Vickrey) auction.

Every party i is a bidder and secret-shares only its own bid. The parties then
jointly find, without revealing any bid, the winner (the index of the highest
bidder) and the price the winner pays (the second-highest bid). Only these two
numbers are revealed. Ties are broken in favour of the lowest party index; the
price is then equal to the highest bid.

Party i bids the i-th value (modulo the list length) of the --bids option.
With the defaults 30,75,50,90,62 the outcome is:

    m = 2: bids 30, 75              -> winner party 1, price 30
    m = 3: bids 30, 75, 50          -> winner party 1, price 50
    m = 5: bids 30, 75, 50, 90, 62  -> winner party 3, price 75

Run it, for example, with:

    python demos/auction.py -M3
    python demos/auction.py -M5 --bids 120,80,95
    mpc-net run demos/auction.py -M3
"""

import argparse
import sys

from mpyc.runtime import mpc

DEFAULT_BIDS = "30,75,50,90,62"
MAX_BID = 10**9  # bids and their differences must fit in the 32-bit secure integers


def bid_list(text):
    """Parse a comma-separated list of bids (argparse type)."""
    try:
        bids = [int(b) for b in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated integers, got {text!r}"
        ) from None
    for b in bids:
        if not 0 <= b <= MAX_BID:
            raise argparse.ArgumentTypeError(f"bid {b} outside the range 0..{MAX_BID}")
    return bids


def parse_args():
    parser = argparse.ArgumentParser(
        description="Sealed-bid second-price auction: reveal only the winner and the price.",
        epilog="MPyC options such as -M3 (number of parties) are handled by MPyC itself.",
    )
    parser.add_argument(
        "--bids",
        type=bid_list,
        default=bid_list(DEFAULT_BIDS),
        metavar="B0,B1,...",
        help="comma-separated bids; party i bids the i-th value, modulo the "
        f"list length (default {DEFAULT_BIDS})",
    )
    args, unknown = parser.parse_known_args()
    if unknown:
        print(f"ignoring unrecognized arguments: {' '.join(unknown)}", file=sys.stderr)
    return args


def vickrey(bids):
    """Return secure (winner index, second-highest bid) for a list of secure bids."""
    secint = type(bids[0])
    winner, highest, second = secint(0), bids[0], secint(0)
    for i, bid in enumerate(bids[1:], start=1):
        beats_highest = highest < bid  # strict: ties keep the earlier bidder
        beats_second = second < bid
        # New second-highest: old highest if bid beats it, else max(second, bid).
        second = mpc.if_else(beats_highest, highest, mpc.if_else(beats_second, bid, second))
        highest = mpc.if_else(beats_highest, bid, highest)
        winner = mpc.if_else(beats_highest, i, winner)
    return winner, second


async def main():
    args = parse_args()
    secint = mpc.SecInt(32)
    m = len(mpc.parties)

    async with mpc:
        my_bid = args.bids[mpc.pid % len(args.bids)]
        bids = mpc.input(secint(my_bid))  # one secure bid per party, each from its owner
        winner, price = vickrey(bids)
        winner, price = await mpc.output([winner, price])
        print(f"Vickrey auction with {m} sealed bids")
        print(f"Winner: party {winner}")
        print(f"Price (second-highest bid): {price}")


if __name__ == "__main__":
    mpc.run(main())
