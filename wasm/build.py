"""Build the browser bundle of this checkout into a directory (mpc_net/bundle.py does the work).

    python wasm/build.py [--out DIR] [--packages-url URL]

`mpc-net web` builds and caches a bundle by itself; this is for serving one elsewhere, or with
a package repository URL.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # this checkout's mpc_net, whatever is installed

from mpc_net import bundle  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "dist",
                        help="bundle directory (default wasm/dist)")
    parser.add_argument("--packages-url", metavar="URL",
                        help="base URL of Pyodide's package repository, for pages with internet "
                             "access (e.g. https://cdn.jsdelivr.net/pyodide/"
                             f"v{bundle.PYODIDE_VERSION}/full/); default: none, fully offline")
    options = parser.parse_args()
    try:
        manifest = bundle.build(options.out.resolve(), options.packages_url)
    except bundle.BuildError as exc:
        print(f"wasm/build.py: error: cannot build the bundle: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"wasm/build.py: error: {exc.strerror or exc}: {exc.filename or options.out}",
              file=sys.stderr)
        return 1
    snapshot = manifest["snapshot"] or "no memory snapshot (it needs Node with JSPI)"
    print(f"bundle in {options.out}: Pyodide {manifest['pyodide']}, "
          f"{', '.join(manifest['wheels'])}, {snapshot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
