// Make a bundle's Pyodide memory snapshot (mpc_net/bundle.py runs this with Node):
//
//     node snapshot.mjs BUNDLE_DIR OUT_FILE
//
// CPython started, the bundle's wheels unpacked and the page's Python module imported, so that a
// page restores this memory instead of starting CPython inside WebAssembly and importing
// mpc_net. Nothing secret is in it: it is made here, at build time, before any key exists.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [bundleDir, outFile] = process.argv.slice(2);
const indexURL = `${bundleDir}/pyodide/`; // a path: Pyodide in Node reads files, not URLs
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);

// Browser objects the page's modules take from `js` when imported, which Node lacks (crypto it
// has, but its getter refuses Pyodide's proxy). Pyodide records each by its path from the
// globals and, on restore, looks the path up in the page's own globals: so stand-ins do here.
const BROWSER_ONLY = ["RTCPeerConnection", "WebSocket", "indexedDB", "crypto"];
const jsglobals = Object.create(globalThis);
for (const name of BROWSER_ONLY) {
  // Writable and configurable, or Pyodide cannot record the path.
  Object.defineProperty(jsglobals, name, { value: {}, writable: true, configurable: true });
}

async function makeSnapshot() {
  const pyodide = await loadPyodide({ indexURL, jsglobals, _makeSnapshot: true });
  for (const name of readdirSync(`${bundleDir}/wheels`).filter((n) => n.endsWith(".whl"))) {
    pyodide.unpackArchive(new Uint8Array(readFileSync(`${bundleDir}/wheels/${name}`)), "wheel");
  }
  pyodide.pyimport("mpc_net.browser.page");
  // Node's `_` is this script's path on the build machine; a page has no use for it.
  pyodide.runPython("import os; os.environ.pop('_', None)");
  writeFileSync(outFile, pyodide.makeMemorySnapshot());
}

try {
  await makeSnapshot();
} catch (e) {
  // One line for the build's error: a Python exception's message ends with the exception.
  const lines = String(e.message || e).trim().split("\n");
  console.error(`cannot make the memory snapshot: ${lines[lines.length - 1]}`);
  process.exit(1);
}
