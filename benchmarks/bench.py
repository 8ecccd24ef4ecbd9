"""The bench harness (benchmarks/harness) as a script: `python benchmarks/bench.py --help`.

The same as `mpc-net bench` in a checkout; it measures the mpc_net of this checkout.
"""

import sys
from pathlib import Path

# This checkout's mpc_net, whichever copy pip installed last.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import main  # noqa: E402 (the path first)

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:], prog="python benchmarks/bench.py"))
