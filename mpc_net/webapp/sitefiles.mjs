// The bundle's wheels' files (mpc_net/bundle.py's SITE_FILES: a JSON line of [path, length]
// pairs, then the files' bytes in that order) written into Python's site-packages from
// JavaScript: a page does this after restoring the memory snapshot (which holds no files), and
// mpc_net/snapshot.mjs before making it. Unpacking the wheels instead runs Python's zipfile
// and shutil inside WebAssembly, several times slower.

// A relative path of plain names: no "." or ".." or hidden name, nothing absolute, no "\".
const PATH = /^\w[\w.+-]*(\/\w[\w.+-]*)*$/;

export function writeSiteFiles(pyodide, image) {
  const bytes = image instanceof Uint8Array ? image : new Uint8Array(image);
  const newline = bytes.indexOf(10);
  const head = newline < 0 ? "null" : new TextDecoder().decode(bytes.subarray(0, newline));
  const index = JSON.parse(head);
  if (!Array.isArray(index)) throw new Error("the site files have no index");
  const site = pyodide.runPython("import site; site.getsitepackages()[0]");
  // All checked before any is written: a damaged image writes nothing.
  let offset = newline + 1;
  const files = index.map((entry) => {
    const [path, length] = Array.isArray(entry) ? entry : [];
    if (typeof path !== "string" || !PATH.test(path) || !Number.isSafeInteger(length) ||
        length < 0 || offset + length > bytes.length) {
      throw new Error(`the site files have a bad entry: ${JSON.stringify(entry)}`);
    }
    offset += length;
    return [path, bytes.subarray(offset - length, offset)];
  });
  if (offset !== bytes.length) throw new Error("the site files have bytes beyond their index");
  for (const [path, data] of files) {
    const slash = path.lastIndexOf("/");
    if (slash > 0) pyodide.FS.mkdirTree(`${site}/${path.slice(0, slash)}`);
    pyodide.FS.writeFile(`${site}/${path}`, data);
  }
}
