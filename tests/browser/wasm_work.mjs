// MPyC's own work in Pyodide in Node (tests/browser/wasm_work.py runs this):
//
//     node wasm_work.mjs BUNDLE_DIR SCRIPT ARGS_JSON
//
// The bundle's Pyodide with its wheels' files written as a page writes them, then SCRIPT (the
// Python text that wasm_work.py also runs natively) with `ARGS` set to the parsed ARGS_JSON.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [bundleDir, script, argsJson] = process.argv.slice(2);
const bundle = JSON.parse(readFileSync(`${bundleDir}/bundle.json`));
const indexURL = `${bundleDir}/${bundle.pyodideDirectory}/`;
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const { writeSiteFiles } = await import(pathToFileURL(`${bundleDir}/sitefiles.mjs`).href);
const pyodide = await loadPyodide({ indexURL });
writeSiteFiles(pyodide, readFileSync(`${bundleDir}/${bundle.siteFiles}`));
pyodide.globals.set("ARGS", pyodide.toPy(JSON.parse(argsJson)));
try {
  pyodide.runPython(script);
} catch (e) {
  console.error(String(e.message));
  process.exit(1);
}
