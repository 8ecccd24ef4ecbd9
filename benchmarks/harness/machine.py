"""The machine the bench runs on, for the record beside the figures."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import shutil
import subprocess

from .processes import ROOT


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return None


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _git_commit() -> str | None:
    git = shutil.which("git")
    if git is None:
        return None
    done = subprocess.run([git, "-C", str(ROOT), "describe", "--always", "--dirty"],
                          capture_output=True, text=True)
    return (done.stdout.strip() or None) if done.returncode == 0 else None


def machine() -> dict:
    return {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "memory_gib": _memory_gib(),
        "system": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "packages": {name: _version(name) for name in
                     ("mpc-net", "mpyc", "aiortc", "aioice", "numpy", "gmpy2", "uvloop")},
        "checkout": str(ROOT),  # the mpc-net that is measured
        "commit": _git_commit(),
    }


def describe_machine(info: dict) -> str:
    memory = f"{info['memory_gib']:.1f} GiB" if info["memory_gib"] else "? GiB"
    packages = ", ".join(f"{k} {v}" for k, v in info["packages"].items() if v)
    missing = ", ".join(k for k, v in info["packages"].items() if not v)
    return (f"Machine: {info['cpu']}, {info['cores']} cores, {memory} memory, {info['system']}\n"
            f"Python: {info['python']}; {packages}" + (f"; not installed: {missing}"
                                                         if missing else "")
            + f"\nmpc-net measured: {info['checkout']}"
            + (f" (commit {info['commit']})" if info["commit"] else ""))

