// Compile a bundle's Python into bytecode with the bundle's own Pyodide (mpc_net/bundle.py runs
// this with Node):
//
//     node bytecode.mjs BUNDLE_DIR PYODIDE_DIRECTORY SITE_FILES OUT_FILE PACKAGE...
//
// Pyodide writes no bytecode, so a page compiled MPyC's source at every run's import of it (each
// run imports MPyC afresh, as it sets itself up from sys.argv): half a second and more, most of
// what a page spent connecting. OUT_FILE gets a `.pyc` for every `.py` of SITE_FILES in the
// PACKAGEs, in the same format, checked by nothing but their presence (unchecked-hash: the page
// writes the files anew at each load, so their times say nothing), made by the same CPython that
// reads them.
import { readFileSync, writeFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [bundleDir, pyodideDirectory, siteFiles, outFile, ...packages] = process.argv.slice(2);
const indexURL = `${bundleDir}/${pyodideDirectory}/`; // a path: Pyodide in Node reads files
const { loadPyodide } = await import(pathToFileURL(`${indexURL}pyodide.mjs`).href);
const { writeSiteFiles } = await import(pathToFileURL(`${bundleDir}/sitefiles.mjs`).href);

const COMPILE = `
import json, py_compile, site
from importlib.util import cache_from_source
from pathlib import Path

def compiled(index_line, packages):
    root = Path(site.getsitepackages()[0])
    files = {}
    for name, _ in json.loads(index_line):
        if name.endswith(".py") and name.split("/")[0] in packages:
            target = Path(cache_from_source(str(root / name)))
            py_compile.compile(str(root / name), str(target), doraise=True,
                               invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
            files[target.relative_to(root).as_posix()] = target.read_bytes()
    index = sorted(files)
    image = (json.dumps([[name, len(files[name])] for name in index]).encode() + b"\\n"
             + b"".join(files[name] for name in index))
    Path("/tmp/bytecode.bin").write_bytes(image)
`;

try {
  const pyodide = await loadPyodide({ indexURL });
  const image = readFileSync(`${bundleDir}/${siteFiles}`);
  writeSiteFiles(pyodide, image);
  pyodide.runPython(COMPILE);
  const index = new TextDecoder().decode(image.subarray(0, image.indexOf(10)));
  pyodide.globals.get("compiled")(index, pyodide.toPy(packages));
  writeFileSync(outFile, pyodide.FS.readFile("/tmp/bytecode.bin"));
} catch (e) {
  // One line for the build's error: a Python exception's message ends with the exception.
  const lines = String(e.message || e).trim().split("\n");
  console.error(lines[lines.length - 1]);
  process.exit(1);
}
