// Make a bundle's Pyodide memory snapshot (mpc_net/bundle.py runs this with Node):
//
//     node snapshot.mjs BUNDLE_DIR PYODIDE_DIRECTORY SITE_FILES OUT_FILE
//
// CPython started, the bundle's wheels' files written (SITE_FILES, as a page writes them) and the
// page's Python module imported, with the standard library's modules that MPyC imports, so that
// a page restores this memory instead of starting CPython inside WebAssembly and importing
// mpc_net. Nothing secret is in it: it is made here, at build time, before any key exists.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [bundleDir, pyodideDirectory, siteFiles, outFile] = process.argv.slice(2);
const indexURL = `${bundleDir}/${pyodideDirectory}/`; // a path: Pyodide in Node reads files, not URLs
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
// The page's own code for it (mpc_net/webapp/, at the bundle's root), and the snapshot's
// stored form, which the page unpacks.
const { writeSiteFiles } = await import(pathToFileURL(`${bundleDir}/sitefiles.mjs`).href);
const { packMemory } = await import(pathToFileURL(`${bundleDir}/memory.mjs`).href);

// Browser objects the page's modules take from `js` when imported, which Node lacks (crypto it
// has, but its getter refuses Pyodide's proxy). Pyodide records each by its path from the
// globals and, on restore, looks the path up in the page's own globals: so stand-ins do here,
// of the same kind (Python's proxy of a constructor has `new`, that of a plain object not).
const BROWSER_ONLY = {
  RTCPeerConnection: class {},
  WebSocket: class {},
  indexedDB: {},
  crypto: {},
};
const jsglobals = Object.create(globalThis);
for (const [name, value] of Object.entries(BROWSER_ONLY)) {
  // Writable and configurable, or Pyodide cannot record the path.
  Object.defineProperty(jsglobals, name, { value, writable: true, configurable: true });
}

// Pyodide's C side settles at start whether it can block on a promise (JS Promise integration,
// JSPI): a snapshot made without JSPI has Python that never can, even in a browser that has it.
// mpc_net/bundle.py starts Node with its JSPI flag; pages restore only where JSPI is.
const NO_JSPI = 3; // exit code: this Node has no JSPI, so no snapshot

async function makeSnapshot() {
  if (!("Suspending" in WebAssembly || "Suspender" in WebAssembly)) {
    console.error("this Node has no WebAssembly JS Promise integration");
    process.exit(NO_JSPI);
  }
  const pyodide = await loadPyodide({ indexURL, jsglobals, _makeSnapshot: true });
  writeSiteFiles(pyodide, readFileSync(`${bundleDir}/${siteFiles}`));
  pyodide.pyimport("mpc_net.browser.page");
  // And the standard library's modules that MPyC imports, so that a run imports MPyC alone
  // (MPyC itself makes secrets when imported: never in the snapshot).
  pyodide.runPython(`import importlib
from mpc_net.browser.party import MPYC_STANDARD_LIBRARY
for name in MPYC_STANDARD_LIBRARY:
    importlib.import_module(name)`);
  // Node's `_` is this script's path on the build machine; a page has no use for it.
  pyodide.runPython("import os; os.environ.pop('_', None)");
  writeFileSync(outFile, packMemory(pyodide.makeMemorySnapshot()));
}

try {
  await makeSnapshot();
} catch (e) {
  // One line for the build's error: a Python exception's message ends with the exception.
  const lines = String(e.message || e).trim().split("\n");
  console.error(lines[lines.length - 1]);
  process.exit(1);
}
