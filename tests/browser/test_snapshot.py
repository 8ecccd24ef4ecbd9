"""The bundle's memory snapshot: pages start Python from it, never from a snapshot that does
not fit, and each restored Python draws random numbers of its own."""

from __future__ import annotations

import ast
import json
import shutil
import subprocess

import pytest

pytest.importorskip("playwright")

import mpc_net  # noqa: E402
from mpc_net import bundle as builder  # noqa: E402

from .conftest import WebServer  # noqa: E402
from .party_page import PartyPage  # noqa: E402

# Restore the snapshot in Node as a page does, reseed or not, and print the MPyC modules it
# holds, then a draw of `random`.
RESTORE = """
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [bundleDir, snapshot, reseed] = process.argv.slice(2);
const { pyodideDirectory } = JSON.parse(readFileSync(`${bundleDir}/bundle.json`));
const indexURL = `${bundleDir}/${pyodideDirectory}/`;
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const { unpackMemory } = await import(pathToFileURL(`${bundleDir}/memory.mjs`).href);
const pyodide = await loadPyodide({
  indexURL, _loadSnapshot: unpackMemory(readFileSync(`${bundleDir}/${snapshot}`)) });
const page = pyodide.pyimport("mpc_net.browser.page");
if (reseed === "reseed") page.reseed();
console.log(pyodide.runPython(
  "import sys; str([m for m in sys.modules if m.split('.')[0] == 'mpyc'])"));
console.log(pyodide.runPython("import random; random.random()"));
"""


def test_the_snapshot_is_named_by_the_sources_it_was_made_from(bundle) -> None:
    """Another mpc_net, demo, page or snapshot script is another name: a page never restores
    memory of other code than the wheels beside it."""
    name = json.loads((bundle / "bundle.json").read_text())["snapshot"]
    sources = builder.Sources.read()
    assert name == f"snapshot-{sources.digest()[:16]}.bin"
    assert (bundle / name).stat().st_size > 1_000_000
    assert (bundle / f"{name}.gz").is_file()  # served compressed: a fifth of the size
    script = builder.Sources(sources.package, sources.demos, sources.webapp,
                             sources.snapshot_script + b"\n", sources.bytecode_script)
    assert script.digest() != sources.digest()
    compiler = builder.Sources(sources.package, sources.demos, sources.webapp,
                               sources.snapshot_script, sources.bytecode_script + b"\n")
    assert compiler.digest() != sources.digest()


# Pack and unpack memories with long and short runs of zeros, as the build and a page do;
# print whether each came back whole, then the packed sizes, then what damaged ones gave.
PACK = """
import { pathToFileURL } from "node:url";
const [bundleDir] = process.argv.slice(2);
const { packMemory, unpackMemory } = await import(pathToFileURL(`${bundleDir}/memory.mjs`).href);
const run = 65536;
function memory(...parts) {  // [size, fill] pairs
  const m = new Uint8Array(parts.reduce((sum, [n]) => sum + n, 0));
  let at = 0;
  for (const [n, fill] of parts) { m.fill(fill, at, at + n); at += n; }
  return m;
}
const memories = [
  memory([run, 0], [10, 7], [run - 1, 0], [5, 1], [3 * run, 0], [2, 9], [run, 0]),
  memory([100, 3]), memory([run * 2, 0]), new Uint8Array(0)];
const packed = memories.map(packMemory);
console.log(memories.map((m, i) => String(unpackMemory(packed[i]).every((b, j) => b === m[j]) &&
  unpackMemory(packed[i]).length === m.length)).join(" "));
console.log(packed.map((p) => p.length - p.indexOf(10) - 1).join(" "));
const good = packed[0];
const head = new TextDecoder().decode(good.subarray(0, good.indexOf(10)));
const body = good.subarray(good.indexOf(10) + 1);
const join = (text, bytes) => {
  const h = new TextEncoder().encode(text + "\\n");
  const out = new Uint8Array(h.length + bytes.length);
  out.set(h); out.set(bytes, h.length); return out;
};
for (const damaged of [
    join(head, body.subarray(1)), join(head, new Uint8Array([...body, 0])),
    join(head.replace(/\\[\\d+,/, "[-1,"), body),
    join(JSON.stringify({ length: 10, pieces: [[5, 10]] }), new Uint8Array(10)),
    join(JSON.stringify({ length: 30, pieces: [[10, 5], [0, 5]] }), new Uint8Array(10)),
    join("[]", body)]) {
  try { unpackMemory(damaged); console.log("unpacked"); } catch (e) { console.log("refused"); }
}
"""


def test_the_snapshot_is_stored_without_its_long_runs_of_zeros(bundle, tmp_path) -> None:
    """Half of Pyodide's memory is runs of zeros, which every page had inflated and copied: the
    bundle stores the rest (the build packs, the page unpacks, both with webapp/memory.mjs),
    and a page refuses a stored snapshot whose pieces do not fit."""
    name = json.loads((bundle / "bundle.json").read_text())["snapshot"]
    stored = (bundle / name).read_bytes()
    assert bytes(65536) not in stored
    head = json.loads(stored[:stored.index(b"\n")])
    assert len(stored) < 0.7 * head["length"]
    script = tmp_path / "pack.mjs"
    script.write_text(PACK)
    done = subprocess.run(["node", str(script), str(bundle)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0] == "true true true true"
    # Kept: the 10 and 5 bytes with the shorter run of zeros between them, and the 2; all of
    # the memory without zeros; nothing of one that is all zeros.
    assert lines[1] == f"{10 + 65535 + 5 + 2} 100 0 0"
    assert lines[2:] == ["refused"] * 6


def test_without_node_the_bundle_has_no_snapshot(bundle, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert builder.make_snapshot(bundle, builder.Sources.read()) is None


def test_a_node_without_jspi_makes_no_snapshot(bundle, tmp_path, monkeypatch) -> None:
    """Its Python could never block on a promise: pages start Python afresh instead."""
    node = tmp_path / "node"  # a Node that names no JSPI flag, so runs without one
    node.write_text(f'#!/bin/sh\n[ "$1" = --v8-options ] && exit 0\n'
                    f'exec {shutil.which("node")} "$@"\n')
    node.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert builder.make_snapshot(bundle, builder.Sources.read()) is None


def test_a_snapshot_that_cannot_be_made_fails_the_build_in_one_line(bundle, tmp_path) -> None:
    pyodide = builder.PYODIDE_DIRECTORY
    (tmp_path / pyodide).symlink_to(bundle / pyodide)  # and no site files
    for module in ("sitefiles.mjs", "memory.mjs"):
        (tmp_path / module).symlink_to(bundle / module)
    with pytest.raises(builder.BuildError, match="cannot make the memory snapshot") as failed:
        builder.make_snapshot(tmp_path, builder.Sources.read())
    assert "\n" not in str(failed.value) and builder.SITE_FILES in str(failed.value)


# A Node script's start: Pyodide started afresh from a bundle, and the bundle's site files
# written as the page writes them (the script's arguments: the bundle's directory, and the
# site files' name in it).
PYODIDE_WITH_SITE_FILES = """\
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [bundleDir, siteFiles] = process.argv.slice(2);
const { pyodideDirectory } = JSON.parse(readFileSync(`${bundleDir}/bundle.json`));
const indexURL = `${bundleDir}/${pyodideDirectory}/`;
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const { writeSiteFiles } = await import(pathToFileURL(`${bundleDir}/sitefiles.mjs`).href);
const pyodide = await loadPyodide({ indexURL });
writeSiteFiles(pyodide, readFileSync(`${bundleDir}/${siteFiles}`));
"""


# Start Python afresh in Node, write the bundle's site files with the page's code, and import
# MPyC as a run does: print the modules of site-packages compiled from source meanwhile, and
# those imported.
IMPORT_MPYC = PYODIDE_WITH_SITE_FILES + """
console.log(pyodide.runPython(`
import importlib.machinery, site, sys
compiled = []
to_code = importlib.machinery.SourceFileLoader.source_to_code
def recorded(self, data, path, *args, **kwargs):
    compiled.append(path)
    return to_code(self, data, path, *args, **kwargs)
importlib.machinery.SourceFileLoader.source_to_code = recorded
sys.argv = ['prog.py', '-M3', '-I0']
import mpyc.runtime, mpyc.statistics, mpyc.seclists
root = site.getsitepackages()[0]
imported = [m.__name__ for m in sys.modules.values() if getattr(m, '__file__', '') and
            m.__file__.startswith(root)]
str(([p for p in compiled if p.startswith(root)], sorted(imported)))`));
"""


def test_a_run_imports_mpyc_from_the_bundles_bytecode(bundle, tmp_path) -> None:
    """Pyodide writes no bytecode, and each run imports MPyC afresh: from the bytecode the
    build compiled with the bundle's Pyodide, never from source (which took a page half a
    second and more of its connecting)."""
    script = tmp_path / "import.mjs"
    script.write_text(IMPORT_MPYC)
    done = subprocess.run(["node", str(script), str(bundle), builder.SITE_FILES],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    compiled, imported = ast.literal_eval(done.stdout.strip().splitlines()[-1])
    assert compiled == []
    assert {"mpyc.runtime", "mpyc.sectypes", "mpyc.statistics", "mpyc.seclists"} <= set(imported)
    files = builder.read_site_files(bundle / builder.SITE_FILES)
    sources = {path for path in files if path.endswith(".py")}
    bytecode = {path for path in files if path.endswith(".pyc")}
    # MPyC's modules have theirs (mpc_net's are in the snapshot's memory), of the page's Python.
    assert {path for path in sources if path.startswith("mpyc/")} == {
        path.replace("__pycache__/", "").rsplit(".", 2)[0] + ".py" for path in bytecode}
    assert all(".cpython-" in path for path in bytecode)


def test_without_node_the_bundle_has_no_bytecode(bundle, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert builder.compile_bytecode(bundle) == {}


def test_bytecode_that_cannot_be_made_fails_the_build_in_one_line(bundle, tmp_path) -> None:
    pyodide = builder.PYODIDE_DIRECTORY
    (tmp_path / pyodide).symlink_to(bundle / pyodide)  # and no site files
    (tmp_path / "sitefiles.mjs").symlink_to(bundle / "sitefiles.mjs")
    with pytest.raises(builder.BuildError, match="cannot compile the bundle's Python") as failed:
        builder.compile_bytecode(tmp_path)
    assert "\n" not in str(failed.value) and builder.SITE_FILES in str(failed.value)
    assert not (tmp_path / "bytecode.tmp").exists()


# Start Python afresh in Node, write the bundle's site files with the page's code, then try
# damaged ones: print what imports and importlib.metadata say, and each refusal.
WRITE_SITE_FILES = PYODIDE_WITH_SITE_FILES + """
console.log(pyodide.runPython(`
import importlib.metadata, mpyc.runtime, mpc_net_demos, mpc_net.browser.demos
' '.join(importlib.metadata.version(d) for d in ('mpyc', 'mpc-net', 'mpc-net-demos'))`));
const encoder = new TextEncoder();
for (const image of [
  '[["../escaped.py", 1]]\\nx', '[["/tmp/escaped.py", 1]]\\nx',
  '[["a/../../escaped.py", 1]]\\nx', '[[".hidden", 1]]\\nx', '[["a//b", 1]]\\nx',
  '[["a\\\\\\\\b", 1]]\\nx', '[["a", 2]]\\nx', '[["a", -1]]\\nx',
  '[["a", 1]]\\nxy', '[["a", 1]]', '{"a": 1}\\nx', '[["a"]]\\nx']) {
  try {
    writeSiteFiles(pyodide, encoder.encode(image));
    console.log(`written: ${image}`);
  } catch (e) {
    console.log(`refused: ${e.message}`);
  }
}
console.log(pyodide.runPython(`
import os
str([name for top in ('/lib', '/tmp', '/home') for _, _, names in os.walk(top)
     for name in names if name in ('escaped.py', '.hidden', 'a')])`));
"""


def test_the_page_writes_the_wheels_files_and_only_plain_paths(bundle, tmp_path) -> None:
    """The page's code for the site files, on the bundle's own (imports and package metadata
    work, as after unpacking the wheels) and on damaged ones: a path that leaves site-packages
    or a length that does not fit is refused, never written."""
    script = tmp_path / "write.mjs"
    script.write_text(WRITE_SITE_FILES)
    done = subprocess.run(["node", str(script), str(bundle), builder.SITE_FILES],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()[-14:]
    assert lines[0] == f"0.11 {mpc_net.__version__} {mpc_net.__version__}"
    assert len(lines) == 14 and all(line.startswith("refused: ") for line in lines[1:13]), lines
    assert lines[13] == "[]"


def test_each_restored_python_draws_its_own_random_numbers(bundle, tmp_path) -> None:
    """Pages share the snapshot's memory, and so `random`'s state: page.reseed gives each its
    own (the room's retry jitter draws from it)."""
    script = tmp_path / "restore.mjs"
    script.write_text(RESTORE)
    name = json.loads((bundle / "bundle.json").read_text())["snapshot"]

    def draw(reseed: str) -> str:
        done = subprocess.run(["node", str(script), str(bundle), name, reseed],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout.strip().splitlines()[-1]

    assert draw("as-is") == draw("as-is")  # what reseeding is for
    assert draw("reseed") != draw("reseed")


def test_the_snapshot_holds_no_mpyc(bundle, tmp_path) -> None:
    """MPyC's runtime makes its pseudorandom secret-sharing keys when imported: a snapshot made
    after importing it would give every page of the bundle the same keys. Only mpc_net's page
    module is imported before the snapshot; MPyC is imported afresh by each run."""
    script = tmp_path / "restore.mjs"
    script.write_text(RESTORE)
    name = json.loads((bundle / "bundle.json").read_text())["snapshot"]
    done = subprocess.run(["node", str(script), str(bundle), name, "reseed"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    modules = done.stdout.strip().splitlines()[-2]
    assert modules.startswith("[") and "mpyc" not in modules, done.stdout


# Restore the snapshot in Node as a page does, then import MPyC as a run does: print the
# modules, other than MPyC's, that this imported (the snapshot lacked them).
RESTORE_AND_IMPORT = """
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
const [bundleDir] = process.argv.slice(2);
const { pyodideDirectory, siteFiles, snapshot } = JSON.parse(
  readFileSync(`${bundleDir}/bundle.json`));
const indexURL = `${bundleDir}/${pyodideDirectory}/`;
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const { writeSiteFiles } = await import(pathToFileURL(`${bundleDir}/sitefiles.mjs`).href);
const { unpackMemory } = await import(pathToFileURL(`${bundleDir}/memory.mjs`).href);
const pyodide = await loadPyodide({
  indexURL, _loadSnapshot: unpackMemory(readFileSync(`${bundleDir}/${snapshot}`)) });
writeSiteFiles(pyodide, readFileSync(`${bundleDir}/${siteFiles}`));
pyodide.pyimport("mpc_net.browser.page");
console.log(pyodide.runPython(`
import sys
held = set(sys.modules)
sys.argv = ['prog.py', '-M3', '-I0']
import mpyc.runtime, mpyc.statistics, mpyc.seclists
str(sorted(m for m in set(sys.modules) - held if m.split('.')[0] != 'mpyc'))`));
"""


def test_the_snapshot_holds_the_standard_library_mpyc_imports(bundle, tmp_path) -> None:
    """A restored page's first run imported the standard library's modules that MPyC uses
    (C extensions among them) with MPyC: 1.5 s and more of its connecting. The snapshot holds
    them all, so the run imports only MPyC."""
    script = tmp_path / "restore.mjs"
    script.write_text(RESTORE_AND_IMPORT)
    done = subprocess.run(["node", str(script), str(bundle)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout


def test_a_page_restores_the_snapshot_and_starts_afresh_without_a_good_one(
        browser, bundle, loopback, tmp_path) -> None:
    """A snapshot that does not fit (here: the memory's header damaged, as Pyodide's check of
    its build finds one of another Pyodide) is said in the log and Python starts afresh;
    snapshot=off in the link starts afresh too."""
    broken = tmp_path / "bundle"
    shutil.copytree(bundle, broken)
    name = json.loads((bundle / "bundle.json").read_text())["snapshot"]
    damaged = bytearray((bundle / name).read_bytes())
    memory = damaged.index(b"\n") + 1  # after the index of its pieces (webapp/memory.mjs)
    damaged[memory:memory + 16] = bytes(16)
    (broken / name).write_bytes(damaged)
    (broken / f"{name}.gz").unlink()
    servers = [WebServer(loopback, bundle), WebServer(loopback, broken)]
    try:
        for server, query, restored in ((servers[0], "", True),
                                        (servers[0], "?snapshot=off", False),
                                        (servers[1], "", False)):
            page = PartyPage(browser, server.origin)
            try:
                page.open(query)
                page.wait_ready()
                assert page.restored is restored
                failed = f"Could not restore Python from {name}" in page.log
                assert failed is (server is servers[1]), page.log
                assert page.public_key
                assert page.problems() == []
            finally:
                page.close()
    finally:
        for server in servers:
            server.close()
