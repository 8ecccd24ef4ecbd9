// The bundle's memory snapshot as stored: Pyodide's memory without its long runs of zeros (14 of
// its 31 MB are such runs: heap not yet used, and the top of memory). Stored whole, every page
// had those zeros inflated by the browser's network service, passed to it and copied; so the
// file holds a JSON line {"length": N, "pieces": [[offset, size], ...]} and then the pieces'
// bytes in that order, and a page puts them into zeroed memory of N bytes. mpc_net/snapshot.mjs
// packs (at build time), the page unpacks.

// Runs of zeros at least this long are left out: a WebAssembly page (64 KiB), so that a piece
// never saves less than its entry costs.
const RUN = 65536;

export function packMemory(memory) {
  const pieces = [];
  let start = 0; // where the current piece began
  let zeros = 0; // zeros just before `i`
  for (let i = 0; i < memory.length; i++) {
    if (memory[i] !== 0) {
      if (zeros >= RUN) {
        if (i - zeros > start) pieces.push([start, i - zeros - start]);
        start = i;
      }
      zeros = 0;
    } else {
      zeros++;
    }
  }
  const end = zeros >= RUN ? memory.length - zeros : memory.length;
  if (end > start) pieces.push([start, end - start]);
  const head = new TextEncoder().encode(
    JSON.stringify({ length: memory.length, pieces }) + "\n");
  const size = pieces.reduce((sum, [, n]) => sum + n, 0);
  const packed = new Uint8Array(head.length + size);
  packed.set(head);
  let at = head.length;
  for (const [offset, n] of pieces) {
    packed.set(memory.subarray(offset, offset + n), at);
    at += n;
  }
  return packed;
}

export function unpackMemory(packed) {
  const bytes = packed instanceof Uint8Array ? packed : new Uint8Array(packed);
  const newline = bytes.indexOf(10);
  const head = JSON.parse(newline < 0 ? "null" : new TextDecoder().decode(
    bytes.subarray(0, newline)));
  const { length, pieces } = head || {};
  if (!Number.isSafeInteger(length) || length < 0 || !Array.isArray(pieces)) {
    throw new Error("the snapshot has no index");
  }
  const memory = new Uint8Array(length);
  let at = newline + 1;
  let next = 0; // pieces are in order and apart
  for (const piece of pieces) {
    const [offset, n] = Array.isArray(piece) ? piece : [];
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(n) || offset < next || n <= 0 ||
        offset + n > length || at + n > bytes.length) {
      throw new Error(`the snapshot has a bad piece: ${JSON.stringify(piece)}`);
    }
    memory.set(bytes.subarray(at, at + n), offset);
    at += n;
    next = offset + n;
  }
  if (at !== bytes.length) throw new Error("the snapshot has bytes beyond its pieces");
  return memory;
}
