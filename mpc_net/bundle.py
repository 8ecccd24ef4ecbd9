"""The browser bundle: Pyodide, wheels of MPyC, mpc_net and the demos, and the web app, as one
static directory that `mpc-net web` (or any static web server) serves.

`mpc-net web` builds it on first use into a per-user cache, keyed by the version and a digest of
this installation's sources, so the mpc_net a page loads is always the code installed here;
`python wasm/build.py` builds one into a directory of your choice. Pyodide comes from npm and
MPyC's wheel from PyPI, both checked against pinned digests and kept in the cache, after which
builds need no network at all. Our own wheels are written here from the installed files: they
are pure Python, and a wheel is a zip with a dist-info, so no build backend is needed.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from . import __version__
from .browser.demos import DEMOS_PACKAGE, catalog

PACKAGE = Path(__file__).resolve().parent
# Page glue (index.html, app.js, style.css): package data, served at the bundle's root.
WEBAPP = PACKAGE / "webapp"
# The checkout's demos/ (a symlink there), copied into the package when it is installed.
DEMOS = PACKAGE / "demos"
# Not part of the mpc_net wheel the browser loads: the demos get their own, the app is served.
DATA_DIRECTORIES = ("demos", "webapp")
# Makes the bundle's memory snapshot with Node (see make_snapshot).
SNAPSHOT_SCRIPT = PACKAGE / "snapshot.mjs"
# Compiles the wheels' Python into bytecode with Node (see compile_bytecode), of these packages:
# MPyC's, which every run imports afresh. mpc_net's modules are in the memory snapshot, so a page
# that restores it imports none; the others compile them once per load; their bytecode would add
# 0.4 MB gzipped to every load.
BYTECODE_SCRIPT = PACKAGE / "bytecode.mjs"
BYTECODE_PACKAGES = ("mpyc",)
# Node's flags for WebAssembly JS Promise integration, newest first; and the script's exit code
# for a Node without it.
JSPI_FLAGS = ("--experimental-wasm-jspi", "--experimental-wasm-stack-switching")
NO_JSPI = 3

PYODIDE_VERSION = "314.0.7"
# npm's `dist.integrity` of pyodide-314.0.7.tgz.
PYODIDE_INTEGRITY = ("sha512-0YvXxEhfEdpLfb/XkM2BFAeMROq0iMUX2bzzH9pOttyMcWkwq+HbE5uyuGD82LN7y2q+"
                     "SNvi/6V5JEsOlD2R1A==")
# Pyodide's files go into a directory named by the pinned tarball's digest: `mpc-net web` lets
# browsers keep such files for good (and Chromium its compiled WebAssembly with them).
PYODIDE_DIRECTORY = ("pyodide-"
                     + base64.b64decode(PYODIDE_INTEGRITY.removeprefix("sha512-")).hex()[:16])
# Files of the npm package a page never needs.
PYODIDE_SKIP = ("console.html", "console-v2.html", "ffi.d.ts", "pyodide.d.ts")

MPYC_WHEEL = "mpyc-0.11-py3-none-any.whl"
MPYC_SHA256 = "059ffa3396089ebb77beb43ea2f8040f2a20f3fc7ff6d3c839df3b3f3c28d38e"

# The wheels' files as one file, which a page writes into Python's site-packages from
# JavaScript (webapp/sitefiles.mjs) rather than unpacking the wheels in Python: a JSON line of
# [path, length] pairs, then the files' bytes in that order.
SITE_FILES = "site-files.bin"

# Below this saving a precompressed copy is not worth a second file (wheels are zips already).
GZIP_MIN_SAVING = 0.1


class BuildError(Exception):
    """Why the bundle could not be built, in one line."""


def cache_root() -> Path:
    """Per user, as other tools keep downloads: $XDG_CACHE_HOME/mpc-net or ~/.cache/mpc-net."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "mpc-net"


def downloads() -> Path:
    return cache_root() / "downloads"


def run(*command: str) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        said = (done.stderr or done.stdout).strip().splitlines()
        raise BuildError(f"`{' '.join(command[:3])} ...` failed"
                         + (f": {said[-1].strip()}" if said else ""))


def integrity(path: Path) -> str:
    return "sha512-" + base64.b64encode(hashlib.sha512(path.read_bytes()).digest()).decode()


def offline_ready() -> bool:
    """Whether the cache holds every download, so that a build needs no network."""
    return all((downloads() / name).is_file()
               for name in (f"pyodide-{PYODIDE_VERSION}.tgz", MPYC_WHEEL))


def pyodide_tarball() -> Path:
    """The npm tarball of Pyodide, fetched once with npm and always checked against the pin."""
    tarball = downloads() / f"pyodide-{PYODIDE_VERSION}.tgz"
    if not tarball.exists():
        if shutil.which("npm") is None:
            raise BuildError(f"it needs npm to fetch Pyodide {PYODIDE_VERSION} from the npm "
                             "registry (once; install npm)")
        tarball.parent.mkdir(parents=True, exist_ok=True)
        run("npm", "pack", f"pyodide@{PYODIDE_VERSION}", "--pack-destination",
            str(tarball.parent), "--silent")
    if integrity(tarball) != PYODIDE_INTEGRITY:
        tarball.unlink()
        raise BuildError(f"{tarball.name} does not match the pinned integrity; removed it")
    return tarball


def mpyc_wheel() -> Path:
    """MPyC's wheel, fetched once from PyPI with pip and always checked against the pin."""
    wheel = downloads() / MPYC_WHEEL
    if not wheel.exists():
        if importlib.util.find_spec("pip") is None:
            raise BuildError(f"it needs pip in {sys.executable} to fetch {MPYC_WHEEL} from PyPI "
                             "(once)")
        run(sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "-q",
            "-d", str(wheel.parent), f"mpyc=={MPYC_WHEEL.split('-')[1]}")
    if hashlib.sha256(wheel.read_bytes()).hexdigest() != MPYC_SHA256:
        wheel.unlink()
        raise BuildError(f"{wheel.name} does not match the pinned sha256; removed it")
    return wheel


@dataclass(frozen=True)
class Sources:
    """What this installation puts into a bundle besides the downloads."""

    package: dict[str, bytes]  # the mpc_net wheel's files, by path in the wheel
    demos: dict[str, bytes]  # the mpc_net_demos wheel's files
    webapp: dict[str, bytes]  # the page glue, by file name
    snapshot_script: bytes  # what makes the memory snapshot
    bytecode_script: bytes  # what compiles the wheels' Python

    @classmethod
    def read(cls) -> Sources:
        package = {f"mpc_net/{path.relative_to(PACKAGE).as_posix()}": path.read_bytes()
                   for path in sorted(PACKAGE.rglob("*.py"))
                   if path.relative_to(PACKAGE).parts[0] not in DATA_DIRECTORIES
                   and "__pycache__" not in path.parts}
        demos = {f"{DEMOS_PACKAGE}/{path.name}": path.read_bytes()
                 for path in sorted(DEMOS.iterdir()) if path.suffix in (".py", ".md")}
        demos[f"{DEMOS_PACKAGE}/__init__.py"] = b'"""The mpc-net demo programs."""\n'
        webapp = {path.name: path.read_bytes() for path in sorted(WEBAPP.iterdir())
                  if path.is_file()}
        return cls(package, demos, webapp, SNAPSHOT_SCRIPT.read_bytes(),
                   BYTECODE_SCRIPT.read_bytes())

    def digest(self) -> str:
        """Changes with any source, and with the pinned downloads."""
        digest = hashlib.sha256(f"{PYODIDE_INTEGRITY} {MPYC_SHA256}".encode())
        for part in (self.package, self.demos, self.webapp,
                     {SNAPSHOT_SCRIPT.name: self.snapshot_script,
                      BYTECODE_SCRIPT.name: self.bytecode_script}):
            for name, data in sorted(part.items()):
                digest.update(b"%d:%s%d:" % (len(name), name.encode(), len(data)) + data)
        return digest.hexdigest()


def write_wheel(directory: Path, name: str, version: str, files: dict[str, bytes]) -> str:
    """A pure-Python wheel of `files`, reproducible (fixed timestamps, sorted entries)."""
    stem = f"{name.replace('-', '_')}-{version}"
    info = f"{stem}.dist-info"
    files = {**files,
             f"{info}/METADATA": (f"Metadata-Version: 2.1\nName: {name}\n"
                                  f"Version: {version}\n").encode(),
             f"{info}/WHEEL": (b"Wheel-Version: 1.0\nGenerator: mpc-net\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n")}
    record = "".join(f"{path},sha256={_record_digest(data)},{len(data)}\n"
                     for path, data in sorted(files.items())) + f"{info}/RECORD,,\n"
    files[f"{info}/RECORD"] = record.encode()
    filename = f"{stem}-py3-none-any.whl"
    with zipfile.ZipFile(directory / filename, "w") as wheel:
        for path, data in sorted(files.items()):
            entry = zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            wheel.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    return filename


def _record_digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).decode().rstrip("=")


def site_files(wheels: list[Path]) -> dict[str, bytes]:
    """Every file of `wheels`, by path in site-packages (all of a pure wheel goes there)."""
    files = {}
    for wheel in wheels:
        with zipfile.ZipFile(wheel) as archive:
            for entry in archive.infolist():
                if entry.filename.split("/")[0].endswith(".data"):
                    raise BuildError(f"{wheel.name} has files outside site-packages")
                if not entry.is_dir():
                    files[entry.filename] = archive.read(entry)
    return files


def write_site_files(path: Path, files: dict[str, bytes]) -> None:
    index = sorted(files)
    path.write_bytes(json.dumps([[name, len(files[name])] for name in index]).encode() + b"\n"
                     + b"".join(files[name] for name in index))


def read_site_files(path: Path) -> dict[str, bytes]:
    """The files of an image that write_site_files (or the bytecode script) wrote."""
    head, _, data = path.read_bytes().partition(b"\n")
    files, offset = {}, 0
    for name, length in json.loads(head):
        files[name], offset = data[offset:offset + length], offset + length
    if offset != len(data):
        raise BuildError(f"{path.name} does not hold the files its index lists")
    return files


def compile_bytecode(bundle: Path) -> dict[str, bytes]:
    """The bytecode of the Python files of BYTECODE_PACKAGES in the bundle's site files,
    compiled by its Pyodide, by path in site-packages (`mpyc/__pycache__/NAME.TAG.pyc`); none
    without Node (the page then compiles what it imports, as Pyodide writes no bytecode)."""
    node = shutil.which("node")
    if node is None:
        return {}
    out = bundle / "bytecode.tmp"
    done = subprocess.run([node, str(BYTECODE_SCRIPT), str(bundle), PYODIDE_DIRECTORY,
                           SITE_FILES, str(out), *BYTECODE_PACKAGES],
                          capture_output=True, text=True)
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise BuildError("cannot compile the bundle's Python with Node"
                         + (f": {said[-1].strip()}" if said else ""))
    try:
        return read_site_files(out)
    finally:
        out.unlink()


def copy_pyodide(target: Path) -> None:
    target.mkdir()
    with tarfile.open(pyodide_tarball()) as tar:
        for member in tar.getmembers():
            name = member.name.removeprefix("package/")
            if not member.isfile() or "/" in name or name in PYODIDE_SKIP:
                continue
            (target / name).write_bytes(tar.extractfile(member).read())


def make_snapshot(bundle: Path, sources: Sources) -> str | None:
    """Pyodide's memory snapshot of `bundle` (CPython started, mpc_net's page module imported),
    which a page restores instead of starting Python: its file name, or None without Node or
    without JSPI in it (the page then starts Python itself, a few seconds slower). The name
    carries the sources' digest, so a page never restores a snapshot of other code than the
    wheels beside it."""
    node = shutil.which("node")
    if node is None:
        return None
    # JSPI, under the flag this Node knows (the older one gives the older API, which serves).
    options = subprocess.run([node, "--v8-options"], capture_output=True, text=True).stdout
    flags = [flag for flag in JSPI_FLAGS if flag in options][:1]
    name = f"snapshot-{sources.digest()[:16]}.bin"
    done = subprocess.run([node, *flags, str(SNAPSHOT_SCRIPT), str(bundle), PYODIDE_DIRECTORY,
                           SITE_FILES, str(bundle / name)], capture_output=True, text=True)
    if done.returncode == NO_JSPI:
        return None
    if done.returncode != 0:
        said = done.stderr.strip().splitlines()
        raise BuildError("cannot make the memory snapshot with Node"
                         + (f": {said[-1].strip()}" if said else ""))
    return name


def precompress(directory: Path) -> None:
    """A `NAME.gz` beside every file that gzip makes clearly smaller, for `mpc-net web` to send
    to browsers that accept gzip (once here, instead of on every request)."""
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        if len(packed) <= (1 - GZIP_MIN_SAVING) * len(data):
            path.with_name(path.name + ".gz").write_bytes(packed)


def build(out: Path, packages_url: str | None = None, sources: Sources | None = None) -> dict:
    """Build the bundle into `out`, replacing whatever is there only once all of it is made."""
    sources = sources or Sources.read()
    staging = out.with_name(f"{out.name}.tmp{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        copy_pyodide(staging / PYODIDE_DIRECTORY)
        wheels = staging / "wheels"
        wheels.mkdir()
        shutil.copy(mpyc_wheel(), wheels)
        write_wheel(wheels, "mpc-net", __version__, sources.package)
        write_wheel(wheels, "mpc-net-demos", __version__, sources.demos)
        files = site_files(sorted(wheels.glob("*.whl")))
        write_site_files(staging / SITE_FILES, files)
        for name, data in sources.webapp.items():
            (staging / name).write_bytes(data)
        # With their bytecode, which the page's imports then read instead of compiling.
        write_site_files(staging / SITE_FILES, files | compile_bytecode(staging))
        snapshot = make_snapshot(staging, sources)
        manifest = {
            "pyodide": PYODIDE_VERSION,
            "pyodideDirectory": PYODIDE_DIRECTORY,
            "version": __version__,
            "wheels": sorted(p.name for p in wheels.glob("*.whl")),
            # Their files and bytecode, which the page writes (see SITE_FILES).
            "siteFiles": SITE_FILES,
            # Where a page with internet access may load Pyodide's own packages (gmpy2 speeds
            # MPyC up); None: the bundle stays offline and MPyC runs on pure Python.
            "packagesUrl": packages_url,
            "extraPackages": ["gmpy2"],
            "demos": catalog(),
            # Pyodide's memory after importing mpc_net, for a faster start; None: none made.
            "snapshot": snapshot,
        }
        (staging / "bundle.json").write_text(json.dumps(manifest, indent=1) + "\n")
        precompress(staging)
        # Swap in the finished bundle at the end, so a failed build leaves the old one intact.
        shutil.rmtree(out, ignore_errors=True)
        staging.rename(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def installed_bundle(announce) -> Path:
    """The bundle of this installation in the cache, built first if it is not there yet;
    `announce(directory)` is called before a build, which can take a while."""
    sources = Sources.read()
    out = cache_root() / f"bundle-{__version__}-{sources.digest()[:16]}"
    if not (out / "bundle.json").is_file():
        announce(out)
        try:
            build(out, None, sources)
        except OSError as exc:
            raise BuildError(f"{exc.strerror or exc}: {exc.filename or out}") from None
    return out
