// Page glue for mpc-net's browser party: load Pyodide and our wheels' files, fill the form from
// the link, and show what the Python side (mpc_net.browser.page) reports. Everything about rooms,
// keys, channels and MPyC happens in Python.
import { unpackMemory } from "./memory.mjs";
import { writeSiteFiles } from "./sitefiles.mjs";

const params = new URLSearchParams(location.search);
const $ = (id) => document.getElementById(id);
const timings = {};
// For people who script the page (and for the tests): timings in ms since navigation start.
// restored: whether Python came from the bundle's memory snapshot.
window.mpcNet = { timings, publicKey: null, result: null, restored: false };

let page = null; // the Python module mpc_net.browser.page
let join = null;
let running = false;
let demoNames = new Set(); // the Program list's built-in demos; the rest are programs
let ownName = "program.py"; // the file name of the person's own program
const OWN = "own"; // the Program list's entry for the person's own program
// Private inputs are typed into the party's own tab; links pass through chats, server logs
// and browser history, so a page never takes one from its link.
const PRIVATE_PARAMS = ["input", "private-input"];

function setPhase(phase, text) {
  document.body.dataset.phase = phase;
  $("phase").textContent = phase;
  $("status").textContent = text;
  $("progress").hidden = phase !== "computing";
}

function showBox(id, text) {
  $(id).textContent = text || "";
  $(id).hidden = !text;
}

function log(line) {
  $("log").textContent += line + "\n";
}

// Python's view of the page (see mpc_net/browser/page.py).
const ui = {
  status: setPhase,
  program(name, short, full) {
    $("program-name-hash").textContent = name;
    $("program-hash").textContent = short;
    $("program-hash").title = `SHA-256 of ${name}: ${full}`;
    $("program").hidden = false;
  },
  peer(j, row) {
    let tr = document.querySelector(`#peers tr[data-party="${j}"]`);
    if (!tr) {
      tr = document.createElement("tr");
      tr.dataset.party = j;
      for (let k = 0; k < 4; k++) tr.appendChild(document.createElement("td"));
      $("peers").tBodies[0].appendChild(tr);
    }
    const cells = tr.children;
    cells[0].textContent = `party ${row.party}`;
    cells[1].textContent = row.state;
    cells[1].className = /authenticated/.test(row.state) ? "state-ok"
      : /fail|left|lost/.test(row.state) ? "state-bad" : "";
    cells[2].textContent = row.path;
    cells[3].textContent = row.rtt;
  },
  progress(p) {
    const kb = (p.bytes / 1024).toFixed(1);
    $("progress-text").textContent =
      `computing for ${p.seconds.toFixed(1)} s; sent ${p.messages} MPyC messages (${kb} KiB)`;
  },
  output(line) {
    $("outputs").textContent += line + "\n";
  },
  log,
  warning: (text) => showBox("warning", text),
  error: (text) => showBox("error", text),
};

function toBase64Url(text) {
  let binary = "";
  for (const byte of new TextEncoder().encode(text)) binary += String.fromCharCode(byte);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function fromBase64Url(text) {
  const b64 = text.replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4)), (c) =>
    c.charCodeAt(0));
  return new TextDecoder().decode(bytes);
}

const CHECKBOXES = ["relay-only", "trust-room-server"];

// The programs `mpc-net web --program` offers (none from other static servers).
async function servedPrograms() {
  try {
    const response = await fetch("programs.json");
    return response.ok ? (await response.json()).programs : [];
  } catch {
    return [];
  }
}

function optionGroup(label, options) {
  const group = document.createElement("optgroup");
  group.label = label;
  for (const [text, value] of options) group.appendChild(new Option(text, value));
  return group;
}

function fillForm(bundle, programs) {
  const select = $("demo");
  demoNames = new Set(bundle.demos.map((demo) => demo.name));
  if (programs.length) {
    select.appendChild(optionGroup("Programs of this server", programs.map((p) => [p, p])));
  }
  select.appendChild(optionGroup("Demos", bundle.demos.map((d) => [d.title, d.name])));
  select.appendChild(optionGroup("Your own", [["Your own program (file, or paste)", OWN]]));
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  $("signal").value = `${scheme}://${location.host}/`;
  for (const name of ["room", "party", "parties", "demo", "args", "signal", "ice",
    "outage-limit"]) {
    if (params.has(name)) $(name).value = params.get(name);
  }
  if (params.has("program")) {
    if (programs.includes(params.get("program"))) {
      select.value = params.get("program");
    } else {
      showBox("error", `This link names the program ${params.get("program")}, which this ` +
        "server does not offer; ask the organizer for a new link, or pick the program below.");
    }
  }
  const carried = PRIVATE_PARAMS.filter((name) => params.has(name));
  if (carried.length) {
    showBox("warning", `This link carries a private input (${carried.join(", ")}=…), which ` +
      "this page ignores: type your private input here yourself. Links pass through chats, " +
      "server logs and browser history, so they never carry private inputs.");
  }
  for (const name of CHECKBOXES) {
    if (params.has(name)) $(name).checked = ["1", "on", "true", "yes"].includes(params.get(name));
  }
  // Settings a link sets are shown, not hidden in a closed section.
  if (["ice", "outage-limit", ...CHECKBOXES].some((name) => params.has(name))) {
    $("network").open = true;
  }
  if (params.has("roster")) {
    try {
      $("roster").value = fromBase64Url(params.get("roster"));
    } catch {
      showBox("error", "The roster in this link is damaged (not base64url); paste it instead.");
    }
  }
  const showProgram = () => {
    const demo = bundle.demos.find((d) => d.name === select.value);
    $("input-row").hidden = !demo;
    $("private-row").hidden = !!demo;
    $("own-program").hidden = select.value !== OWN;
    if (demo) {
      $("input-label").textContent = demo.input_label;
      $("input").placeholder = `e.g. ${demo.placeholder} (empty: the demo's default)`;
    }
  };
  select.addEventListener("change", showProgram);
  showProgram();
}

async function pickProgram() {
  const file = $("program-file").files[0];
  if (!file) return;
  ownName = file.name;
  $("program-name").textContent = file.name;
  $("program-text").value = await file.text();
}

// The form as page.join takes it: a demo by name, any other program by its text.
async function formFields() {
  const form = Object.fromEntries(new FormData($("join-form")));
  const chosen = $("demo").value;
  if (demoNames.has(chosen)) {
    delete form["private-input"];
    return form;
  }
  delete form.input;
  if (chosen === OWN) {
    form.program_name = ownName;
    form.program_text = $("program-text").value;
    return form;
  }
  const response = await fetch(`programs/${encodeURIComponent(chosen)}`);
  if (!response.ok) throw new Error(`the server no longer offers ${chosen} (HTTP ${response.status})`);
  form.program_name = chosen;
  form.program_text = await response.text();
  return form;
}

function describeRoster() {
  const text = $("roster").value.trim();
  const info = text && page ? page.describe_roster(text) : { ok: false, text: "" };
  $("roster-info").textContent = info.text;
  $("roster-info").className = info.ok ? "hint" : "hint bad";
  showLinks(info.ok ? text : "");
}

// Links that open this page with the room, a party index, the program and the roster filled in.
function showLinks(roster) {
  const room = $("room").value.trim();
  const parties = Number($("parties").value);
  const list = $("links");
  list.replaceChildren();
  const trusting = $("trust-room-server").checked;
  $("share").hidden = !((roster || trusting) && room && parties >= 2 && parties <= 256);
  if ($("share").hidden) return;
  const chosen = $("demo").value;
  const shared = new URLSearchParams({ room, parties });
  if (demoNames.has(chosen)) shared.set("demo", chosen);
  else if (chosen !== OWN) shared.set("program", chosen);
  $("own-not-in-links").hidden = chosen !== OWN;
  if ($("args").value.trim()) shared.set("args", $("args").value.trim());
  if (trusting) shared.set("trust-room-server", "1");
  else shared.set("roster", toBase64Url(roster));
  // Room-wide settings; relay-only is each party's own choice, so links leave it out.
  if (Number($("outage-limit").value) > 0) shared.set("outage-limit", $("outage-limit").value);
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  if ($("signal").value !== `${scheme}://${location.host}/`) shared.set("signal", $("signal").value);
  if (params.has("allow-different-programs")) {
    shared.set("allow-different-programs", params.get("allow-different-programs"));
  }
  for (let i = 0; i < parties; i++) {
    const url = `${location.origin}${location.pathname}?party=${i}&${shared}`;
    const a = document.createElement("a");
    a.href = url;
    a.textContent = url;
    const li = document.createElement("li");
    li.appendChild(a);
    list.appendChild(li);
  }
}

// Where CPython keeps the function through which it calls function pointers (its trampoline).
function trampolineSlot(module) {
  return (module.__PyRuntime + module.HEAP32[module.__PyEM_EMSCRIPTEN_TRAMPOLINE_OFFSET / 4]) / 4;
}

// Pyodide restored from the bundle's snapshot, or null (said in the log) if that fails.
async function restoreSnapshot(loadPyodide, options, name) {
  try {
    const response = await fetch(name);
    if (!response.ok) throw new Error(`${name}: HTTP ${response.status}`);
    // Pyodide's start picks CPython's trampoline before Python runs: one in WebAssembly where
    // the browser can make it (JSPI suspends through it), else one in JavaScript (which JSPI
    // cannot suspend). The snapshot brings the choice of Node, where it was made: so keep the
    // page's own and put it back once restored.
    let trampoline = 0;
    const createPyodideModule = async (settings) => {
      settings.preRun = [...(settings.preRun || []), (module) => {
        trampoline = module.HEAP32[trampolineSlot(module)];
      }];
      return (await import(`${options.indexURL}pyodide.asm.mjs`)).default(settings);
    };
    const pyodide = await loadPyodide({
      ...options, createPyodideModule,
      _loadSnapshot: response.arrayBuffer().then(unpackMemory) });
    pyodide._module.HEAP32[trampolineSlot(pyodide._module)] = trampoline;
    return pyodide;
  } catch (e) {
    log(`Could not restore Python from ${name} (${e.message || e}); starting it afresh.`);
    return null;
  }
}

async function loadPython(bundle) {
  if (params.get("jspi") === "off") {
    // Behave as a browser without JS Promise integration (Safari, older Firefox) does.
    delete WebAssembly.Suspending;
    delete WebAssembly.promising;
  }
  const packagesUrl = params.get("packages") || bundle.packagesUrl;
  // Pyodide's directory is named by its digest, so that browsers keep its files for good.
  const indexURL = new URL(`${bundle.pyodideDirectory}/`, location.href).href;
  const { loadPyodide } = await import(`${indexURL}pyodide.mjs`);
  const options = {
    indexURL,
    ...(packagesUrl ? { packageBaseUrl: packagesUrl } : {}),
    stdout: log,
    stderr: log,
  };
  // Fetched while Python starts.
  const siteFiles = (async () => {
    const response = await fetch(bundle.siteFiles);
    if (!response.ok) throw new Error(`${bundle.siteFiles}: HTTP ${response.status}`);
    return new Uint8Array(await response.arrayBuffer());
  })();
  siteFiles.catch(() => {}); // awaited below; not an unhandled rejection meanwhile
  // The bundle's memory snapshot skips CPython's start and our imports. Only with JSPI, which
  // the snapshot's Python counts on; not with packages from a repository, which would be linked
  // into a restored Python untried; snapshot=off in the link starts Python afresh (to compare).
  const restore = bundle.snapshot && typeof WebAssembly.Suspending === "function" &&
    !packagesUrl && params.get("snapshot") !== "off";
  const restored = restore && await restoreSnapshot(loadPyodide, options, bundle.snapshot);
  window.mpcNet.restored = !!restored;
  const pyodide = restored || await loadPyodide(options);
  timings.pyodide = performance.now();
  if (packagesUrl) {
    // Optional speed-ups from Pyodide's own repository; MPyC runs without them.
    let failed = false;
    await pyodide.loadPackage(bundle.extraPackages, {
      messageCallback: log,
      errorCallback: (message) => {
        failed = true;
        log(message);
      },
    }).catch((e) => {
      failed = true;
      log(String(e));
    });
    if (failed) {
      showBox("warning", `Could not load ${bundle.extraPackages.join(", ")} from ` +
        `${packagesUrl}; running on pure Python instead (slower, same results).`);
    }
  }
  // Files are not in the snapshot: our wheels' files, written from JavaScript.
  writeSiteFiles(pyodide, await siteFiles);
  timings.wheels = performance.now();
  page = pyodide.pyimport("mpc_net.browser.page");
  // Every page restores the same memory: give `random` a seed of this page's own.
  if (restored) page.reseed();
  timings.imported = performance.now();
  join = page.join;
}

async function loadKey() {
  // A page may keep several keys (key=NAME in the link), e.g. one per tab in a demo.
  const info = await page.prepare(params.get("key") || "default");
  window.mpcNet.publicKey = info.publicKey;
  $("public-key").textContent = info.publicKey;
  $("copy-key").disabled = false;
  if (info.new && params.has("roster")) showBox("warning", page.new_key_notice($("roster").value));
}

// The organizer's roster, made from the keys people paste; its links follow at once.
function makeRoster() {
  const result = page.make_roster($("keys").value);
  $("keys-info").textContent = result.text;
  $("keys-info").className = result.ok ? "hint" : "hint bad";
  if (!result.ok) return;
  $("roster").value = result.roster;
  $("parties").value = String(result.parties);
  describeRoster();
  $("share").open = true;
}

async function onJoin(event) {
  event.preventDefault();
  if (running || !join) return;
  running = true;
  $("join").disabled = true;
  setPhase("joining", "Checking the form.");
  showBox("error", "");
  showBox("warning", "");
  $("program").hidden = true;
  $("outputs").textContent = "";
  $("peers").tBodies[0].replaceChildren();
  let form;
  try {
    form = await formFields();
  } catch (e) {
    setPhase("failed", "The run did not start.");
    showBox("error", `Could not get the program: ${e.message || e}`);
    running = false;
    $("join").disabled = false;
    return;
  }
  // A room that agrees to run different programs says so in its links; never a form default.
  if (params.has("allow-different-programs")) {
    form.allow_different_programs = params.get("allow-different-programs");
  }
  const started = performance.now();
  try {
    // callPromising lets Python block in mpc.run, where the browser has JSPI.
    const jspi = typeof WebAssembly.Suspending === "function";
    const result = await (jspi ? join.callPromising(form, ui) : join(form, ui));
    window.mpcNet.result = { ok: result.ok, error: result.error, seconds: result.seconds };
  } catch (e) {
    window.mpcNet.result = { ok: false, error: String(e), seconds: null };
    setPhase("failed", "The run stopped.");
    showBox("error", `Internal error: ${e.message || e}`);
  }
  timings.run = performance.now() - started;
  running = false;
  $("join").disabled = false;
  $("join").textContent = "Join again";
}

async function main() {
  $("join-form").addEventListener("submit", onJoin);
  $("make-roster").addEventListener("click", makeRoster);
  $("program-file").addEventListener("change", () => {
    pickProgram().catch((e) => showBox("error", `Could not read the file: ${e.message || e}`));
  });
  for (const id of ["roster", "room", "parties", "demo", "args", "signal", "outage-limit",
    "trust-room-server"]) {
    $(id).addEventListener("input", describeRoster);
  }
  $("copy-key").addEventListener("click", () => {
    navigator.clipboard.writeText($("public-key").textContent).catch(() => {
      showBox("warning", "Could not copy; select the key and copy it by hand.");
    });
  });
  // WebCrypto, and so the identity key, is there in secure contexts only: say so at once
  // rather than after seconds of loading Python.
  if (!window.isSecureContext) {
    setPhase("failed", "No identity key.");
    showBox("error", "Could not load your identity key: browsers offer WebCrypto only to " +
      "secure pages: open this page over https (mpc-net web --tls-certificate, or a TLS proxy " +
      "in front) or on localhost");
    return;
  }
  try {
    const response = await fetch("bundle.json");
    if (!response.ok) throw new Error(`bundle.json: HTTP ${response.status}`);
    const bundle = await response.json();
    timings.bundle = performance.now();
    fillForm(bundle, await servedPrograms());
    setPhase("loading", `Loading Python (Pyodide ${bundle.pyodide}) and MPyC…`);
    await loadPython(bundle);
  } catch (e) {
    setPhase("failed", "The page could not start.");
    showBox("error", `Could not load Python: ${e.message || e}`);
    return;
  }
  try {
    await loadKey();
  } catch (e) {
    setPhase("failed", "No identity key.");
    // A Python exception's message ends with the exception itself, e.g. "RuntimeError: ...";
    // people need its words, not its class.
    const lines = String(e.message || e).trim().split("\n");
    const reason = lines[lines.length - 1].replace(/^[A-Za-z_.]*(Error|Exception): /, "");
    showBox("error", `Could not load your identity key: ${reason}`);
    return;
  }
  timings.ready = performance.now();
  describeRoster();
  setPhase("ready", `Ready in ${(timings.ready / 1000).toFixed(1)} s. ` +
    "Check the form, type your private input, and join.");
  $("join").disabled = false;
  $("make-roster").disabled = false;
}

main();
