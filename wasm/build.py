"""Build the browser bundle: Pyodide, our wheels and the web app, as one static directory.

    python wasm/build.py [--out DIR] [--packages-url URL]

Everything comes from the package registries (npm for Pyodide, PyPI for MPyC and setuptools)
and the downloads that go into the bundle are checked against pinned digests; once
`wasm/.cache` holds them, the build needs no network at all. `pyodide build` is not used: it
always downloads a cross-build environment first, and our wheels are pure Python, which plain
`pip wheel --no-deps` builds.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CACHE = HERE / ".cache"

PYODIDE_VERSION = "314.0.7"
# npm's `dist.integrity` of pyodide-314.0.7.tgz.
PYODIDE_INTEGRITY = ("sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+"
                     "SNvi/6V5JEsOlD2R1A==")
# Files of the npm package a page never needs.
PYODIDE_SKIP = ("console.html", "console-v2.html", "ffi.d.ts", "pyodide.d.ts")

MPYC_WHEEL = "mpyc-0.11-py3-none-any.whl"
MPYC_SHA256 = "059ffa3396089ebb77beb43ea2f8040f2a20f3fc7ff6d3c839df3b3f3c28d38e"
# The build backend for our own wheels (pyproject's license field needs setuptools >= 77),
# kept in the cache so that building needs no package index.
BUILD_BACKEND = "setuptools>=77"

DEMOS_PACKAGE = "mpc_net_demos"


class BuildError(Exception):
    pass


def run(*command: str, cwd: Path | None = None) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(command[:4])} ... failed:\n{done.stdout}{done.stderr}")


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def pyodide_tarball() -> Path:
    """The npm tarball of Pyodide, fetched once with npm and always checked against the pin."""
    tarball = CACHE / f"pyodide-{PYODIDE_VERSION}.tgz"
    if not tarball.exists():
        run("npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--pack-destination", str(CACHE),
            "--silent")
    if integrity(tarball) != PYODIDE_INTEGRITY:
        tarball.unlink()
        raise BuildError(f"{tarball.name} does not match the pinned integrity; removed it")
    return tarball


def copy_pyodide(out: Path) -> None:
    target = out / "pyodide"
    target.mkdir()
    with tarfile.open(pyodide_tarball()) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if not member.isfile() or "/" in name or name in PYODIDE_SKIP:
                continue
            (target / name).write_bytes(tar.extractfile(member).read())


def download(requirement: str, pattern: str) -> Path:
    """The cached wheel matching `pattern`, downloaded from PyPI the first time."""
    if not any(CACHE.glob(pattern)):
        run(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
            "-d", str(CACHE), requirement)
    return max(CACHE.glob(pattern))


def mpyc_wheel(wheels: Path) -> None:
    wheel = download(f"mpyc=={MPYC_WHEEL.split('-')[1]}", MPYC_WHEEL)
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != MPYC_SHA256:
        wheel.unlink()
        raise BuildError(f"{wheel.name} does not match the pinned sha256; removed it")
    shutil.copy(wheel, wheels)


def project_wheel(source: Path, wheels: Path) -> None:
    # pip builds in the source tree; a copy keeps build/ and egg-info out of the repository.
    # No index: the isolated build environment gets setuptools from the cache.
    download(BUILD_BACKEND, "setuptools-*.whl")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / source.name
        shutil.copytree(source, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pyc",
                                                                    "*.egg-info", "build"))
        run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-index", "--find-links",
            str(CACHE), "-q", "-w", str(wheels), str(copy))


def mpc_net_wheel(wheels: Path) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mpc-net"
        source.mkdir()
        for name in ("pyproject.toml", "README.md"):
            shutil.copy(ROOT / name, source)
        shutil.copytree(ROOT / "mpc_net", source / "mpc_net")
        project_wheel(source, wheels)


def demos_wheel(wheels: Path, version: str) -> None:
    """The demos are plain scripts; in the browser they come as a package of data files."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "mpc-net-demos"
        package = source / DEMOS_PACKAGE
        shutil.copytree(ROOT / "demos", package)
        (package / "__init__.py").write_text('"""The mpc-net demo programs."""\n')
        (source / "pyproject.toml").write_text(
            '[build-system]\nrequires = ["setuptools>=68"]\n'
            'build-backend = "setuptools.build_meta"\n\n'
            f'[project]\nname = "mpc-net-demos"\nversion = "{version}"\n'
            'requires-python = ">=3.11"\n\n'
            f'[tool.setuptools]\npackages = ["{DEMOS_PACKAGE}"]\n'
            f'[tool.setuptools.package-data]\n{DEMOS_PACKAGE} = ["*.md"]\n')
        project_wheel(source, wheels)


def offline_ready() -> bool:
    """Whether the cache holds every download, so that a build needs no network."""
    return all(any(CACHE.glob(pattern)) for pattern in (
        f"pyodide-{PYODIDE_VERSION}.tgz", MPYC_WHEEL, "setuptools-*.whl"))


def build(out: Path, packages_url: str | None) -> dict:
    sys.path.insert(0, str(ROOT))
    from mpc_net import __version__
    from mpc_net.browser.demos import catalog

    CACHE.mkdir(exist_ok=True)
    staging = out.with_name(out.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    wheels = staging / "wheels"
    wheels.mkdir()
    copy_pyodide(staging)
    mpyc_wheel(wheels)
    mpc_net_wheel(wheels)
    demos_wheel(wheels, __version__)
    for item in (HERE / "web").iterdir():
        shutil.copy(item, staging)
    manifest = {
        "pyodide": PYODIDE_VERSION,
        "version": __version__,
        "wheels": sorted(p.name for p in wheels.glob("*.whl")),
        # Where a page with internet access may load Pyodide's own packages (gmpy2 speeds MPyC
        # up); None: the bundle stays offline and MPyC runs on pure Python.
        "packagesUrl": packages_url,
        "extraPackages": ["gmpy2"],
        "demos": catalog(),
    }
    (staging / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
    # Swap in the finished bundle at the end, so a failed build leaves the old one intact.
    shutil.rmtree(out, ignore_errors=True)
    staging.rename(out)
    return manifest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE / "dist",
                        help="bundle directory (default wasm/dist)")
    parser.add_argument("--packages-url", metavar="URL",
                        help="base URL of Pyodide's package repository, for pages with internet "
                             f"access (e.g. https://cdn.jsdelivr.net/pyodide/v{PYODIDE_VERSION}"
                             "/full/); default: none, fully offline")
    options = parser.parse_args()
    try:
        manifest = build(options.out.resolve(), options.packages_url)
    except (BuildError, OSError) as exc:
        print(f"wasm/build.py: error: {exc}", file=sys.stderr)
        return 1
    print(f"bundle in {options.out}: Pyodide {manifest['pyodide']}, "
          f"{', '.join(manifest['wheels'])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
