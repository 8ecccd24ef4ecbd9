// Drives Debian's firefox-esr for the browser tests (tests/browser/firefox.py): puppeteer-core
// over WebDriver BiDi, since Playwright cannot drive a stock Firefox. One JSON request a line on
// stdin, one JSON answer a line on stdout: {id, op, ...} -> {id, value} or {id, error, timeout}.
// Each tab is a browser context of its own (so a key store of its own), as in Chromium, in a
// window of its own: Firefox shows one tab per window, and a tab behind another is hidden, so
// throttled (timers, scheduling), which a party in a run must not be.
import { createInterface } from "node:readline";
import puppeteer from "puppeteer-core";

const [executablePath] = process.argv.slice(2);

const browser = await puppeteer.launch({
  browser: "firefox",
  executablePath,
  headless: true,
  extraPrefsFirefox: {
    // Host candidates on 127.0.0.1 (the tests' namespace has only loopback) under their own
    // addresses, as Chromium gives them to a page with camera and microphone permission: Firefox
    // offers loopback only with this test preference, and, without that permission, only the
    // addresses of its default route (of which the namespace has none).
    "media.peerconnection.ice.loopback": true,
    "media.peerconnection.ice.obfuscate_host_addresses": false,
    "permissions.default.camera": 1,
    "permissions.default.microphone": 1,
  },
});

const tabs = new Map();
let nextTab = 0;

// Requests that leave loopback are refused and reported, as tests/browser/party_page.py does
// for Chromium; console errors and uncaught exceptions are reported too.
async function openTab(origin) {
  const context = await browser.createBrowserContext();
  const page = await context.newPage({ type: "window" }); // visible, like Chromium's pages
  await page.setViewport({ width: 1100, height: 900 });
  const tab = { context, page, problems: [] };
  page.on("console", (message) => {
    if (message.type() === "error") tab.problems.push(message.text());
  });
  page.on("pageerror", (error) => tab.problems.push(`uncaught: ${error.message ?? error}`));
  if (origin) {
    await page.setRequestInterception(true);
    page.on("request", (request) => {
      if (/^(http:\/\/127\.0\.0\.1:|data:)/.test(request.url())) {
        request.continue();
      } else {
        tab.problems.push(`request beyond loopback: ${request.url()}`);
        request.abort();
      }
    });
  }
  const id = nextTab++;
  tabs.set(id, tab);
  return id;
}

// `source` is an expression, or a function's source (as Playwright's evaluate takes it) that is
// called with `arg`.
function evaluate(page, source, arg) {
  const isFunction = /^\s*(async\b|function\b|\(|[\w$]+\s*=>)/.test(source);
  const args = arg === undefined ? "" : JSON.stringify(arg);
  return page.evaluate(isFunction ? `(${source})(${args})` : source);
}

const ops = {
  open: ({ origin }) => openTab(origin),
  close: async ({ tab }) => {
    await tabs.get(tab).context.close();
    tabs.delete(tab);
  },
  goto: async ({ page, url }) => {
    await page.goto(url, { waitUntil: "load" });
  },
  evaluate: ({ page, source, arg }) => evaluate(page, source, arg),
  // A script that each later document of the tab runs before its own.
  init: async ({ page, source }) => {
    await page.evaluateOnNewDocument(source);
  },
  wait: async ({ page, selector, timeout }) => {
    await page.waitForSelector(selector, { timeout });
  },
  click: ({ page, selector }) => page.click(selector),
  // Values are set as a script would, with the events typing gives: a roster typed key by key
  // over BiDi would take seconds.
  fill: ({ page, selector, value }) => page.$eval(selector, (element, text) => {
    if (element.tagName === "SELECT" && ![...element.options].some((o) => o.value === text)) {
      throw new Error(`no option ${text}`);
    }
    element.focus();
    element.value = text;
    element.dispatchEvent(new Event("input", { bubbles: true }));
    element.dispatchEvent(new Event("change", { bubbles: true }));
  }, value),
  problems: ({ tab }) => tabs.get(tab).problems.splice(0),
  screenshot: ({ page }) => page.screenshot({ fullPage: true, encoding: "base64" }),
};

const lines = createInterface({ input: process.stdin });
for await (const line of lines) {
  const request = JSON.parse(line);
  const tab = tabs.get(request.tab);
  let answer;
  try {
    const value = await ops[request.op]({ ...request, page: tab?.page });
    answer = { id: request.id, value: value ?? null };
  } catch (error) {
    answer = { id: request.id, error: String(error.message ?? error),
      timeout: error.name === "TimeoutError" };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
await browser.close();
