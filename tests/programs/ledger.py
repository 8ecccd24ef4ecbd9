"""A test program in the synchronous style, as `python ledger.py -M3` runs it.

mpc.run() at module level, several times in a row; argparse for its public options; each
party's private number on its standard input (one line: a number, empty for 0). Secure
integers, a prime field and fixed-point numbers, mpc.output, mpc.transfer and mpc.random.
"""

import argparse
import sys

from mpyc.runtime import mpc

parser = argparse.ArgumentParser(description="Sums and more of the parties' private numbers.")
parser.add_argument("--offset", type=int, default=0, help="a public number added to the sum")
parser.add_argument("label", nargs="?", default="sum", help="what to call the sum")
options = parser.parse_args()

line = sys.stdin.readline().strip()
mine = int(line) if line else 0

secint = mpc.SecInt(32)
secfld = mpc.SecFld(101)
secfxp = mpc.SecFxp(32)

mpc.run(mpc.start())
names = mpc.run(mpc.transfer(f"party {mpc.pid}"))
print("parties:", ", ".join(names))
numbers = mpc.input(secint(mine))
print(f"{options.label}:", mpc.run(mpc.output(mpc.sum(numbers) + options.offset)))
print("largest:", mpc.run(mpc.output(mpc.max(numbers))))
residues = mpc.input(secfld(mine))
print("product mod 101:", mpc.run(mpc.output(mpc.prod(residues))))
quarters = mpc.input(secfxp(mine / 4))
# Printed as it comes: a whole float such as 3.0 once came back from a page's mpc.run as 3.
print("sum of quarters:", mpc.run(mpc.output(mpc.sum(quarters))))
shuffled = list(numbers)
mpc.random.shuffle(secint, shuffled)
print("shuffled, sorted:", sorted(mpc.run(mpc.output(shuffled))))
print("random below 10:", 0 <= mpc.run(mpc.output(mpc.random.randrange(secint, 10))) < 10)
mpc.run(mpc.shutdown())
