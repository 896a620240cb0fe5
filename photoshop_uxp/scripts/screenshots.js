"use strict";
/**
 * Real screenshots of the panel for the READMEs (`make screenshots`): the panel's own page
 * and modules, in headless Chromium, over the stand-in Photoshop the tests use
 * (test/fake_photoshop.js), connected to a real `layerbridge serve`.
 *
 * UXP's Spectrum widgets (sp-button, sp-textfield, ...) are not in Chromium: a small style
 * sheet draws them as Photoshop's dark panel does. Everything else is the shipped code.
 * Usage: node scripts/screenshots.js OUT_DIR   (needs `chromium` on PATH, or $CHROMIUM)
 */

const fs = require("node:fs");
const http = require("node:http");
const path = require("node:path");
const { spawn } = require("node:child_process");
const WebSocket = require("ws");
const { startServer } = require("../test/helpers");

const ROOT = path.resolve(__dirname, "..");
const REPO = path.resolve(ROOT, "..");
const MODULES = ["main.js", ...fs.readdirSync(path.join(ROOT, "src")).map((f) => `src/${f}`), "test/fake_photoshop.js"];

/** Spectrum's look, roughly: only so the stand-in page reads like the panel in Photoshop. */
const SPECTRUM_STAND_IN = `
  body { background: #323232; color: #ddd; font-family: sans-serif; width: 284px; margin: 0; overflow-x: hidden; }
  sp-button { display: inline-block; padding: 5px 10px; border-radius: 14px; background: #1473e6; color: #fff; text-align: center; font-weight: bold; cursor: default; }
  sp-button[variant="secondary"] { background: #505050; }
  sp-button[variant="warning"] { background: #8a4a00; }
  sp-button[disabled] { background: #3e3e3e; color: #777; }
  sp-textfield, sp-textarea { display: block; background: #1e1e1e; border: 1px solid #555; border-radius: 3px; padding: 4px; min-height: 18px; color: #eee; }
  sp-textfield::before, sp-textarea::before { content: attr(data-value); }
  sp-textarea { min-height: 40px; }
  sp-label { display: block; font-size: 10px; color: #aaa; }
  sp-detail { display: block; margin-top: 10px; font-size: 10px; letter-spacing: 1px; text-transform: uppercase; color: #aaa; }
  sp-progressbar { display: block; height: 4px; background: #555; margin: 6px 0; }
  sp-progressbar::after { content: ""; display: block; height: 4px; width: var(--done, 0%); background: #2d9d78; }
`;

/** The page: index.html with the modules behind a small CommonJS loader. @param {string} serverUrl */
function page(serverUrl) {
  const html = fs.readFileSync(path.join(ROOT, "index.html"), "utf8");
  const modules = MODULES.map((name) => `define(${JSON.stringify(name)}, function (require, module, exports) {\n${fs.readFileSync(path.join(ROOT, name), "utf8")}\n});`).join("\n");
  const loader = `
  const sources = {}, cache = {};
  function define(name, body) { sources[name] = body; }
  function resolve(from, request) {
    const parts = from.split("/").slice(0, -1);
    for (const part of request.split("/")) { if (part === "..") parts.pop(); else if (part !== ".") parts.push(part); }
    const name = parts.join("/");
    return sources[name] ? name : name + ".js";
  }
  function load(name) {
    if (!cache[name]) {
      const module = { exports: {} };
      cache[name] = module;
      sources[name]((request) => requireFrom(name, request), module, module.exports);
    }
    return cache[name].exports;
  }
  function requireFrom(from, request) {
    if (request === "photoshop") return window.fake.module;
    if (request === "uxp") return window.fake.uxp;
    return load(resolve(from, request));
  }
  ${modules}
  // The stand-in host: a document holding the sample poster as one pixel layer.
  window.fake = new (load("test/fake_photoshop.js").FakePhotoshop)();
  localStorage.setItem("layerbridge.settings", JSON.stringify({ address: ${JSON.stringify(serverUrl)}, token: "" }));
  localStorage.setItem("layerbridge.last", JSON.stringify({ prompt: "", layers: 4 }));
  const picture = new Image();
  picture.onload = () => {
    const canvas = document.createElement("canvas");
    canvas.width = picture.width; canvas.height = picture.height;
    const context = canvas.getContext("2d");
    context.drawImage(picture, 0, 0);
    const data = new Uint8Array(context.getImageData(0, 0, picture.width, picture.height).data.buffer);
    const doc = fake.addDocument({ width: picture.width, height: picture.height, title: "poster" });
    fake.inModal = true;
    const layer = doc.addAboveActive(new (load("test/fake_photoshop.js").FakeLayer)(fake, doc, fake.nextId++, "poster", "pixel"));
    layer.pixels = { bounds: { left: 0, top: 0, right: picture.width, bottom: picture.height }, data };
    fake.inModal = false;
    // Text fields show their value through the style sheet.
    setInterval(() => {
      for (const field of document.querySelectorAll("sp-textfield, sp-textarea")) field.dataset.value = field.value || field.getAttribute("placeholder") || "";
      const bar = document.getElementById("progress");
      bar.style.setProperty("--done", Math.round((bar.value || 0) * 100) + "%");
    }, 50);
    load("main.js");
    window.ready = true;
  };
  picture.src = "/poster.png";`;
  return html
    .replace("</style>", `${SPECTRUM_STAND_IN}</style>`)
    .replace('<script src="main.js"></script>', `<script>${loader}</script>`);
}

/** A minimal Chrome DevTools Protocol session. @param {string} url */
function devtools(url) {
  const socket = new WebSocket(url);
  let next = 0;
  /** @type {Map<number, {resolve: Function, reject: Function}>} */
  const waiting = new Map();
  socket.on("message", (data) => {
    const message = JSON.parse(String(data));
    const call = waiting.get(message.id);
    if (!call) return;
    waiting.delete(message.id);
    if (message.error) call.reject(new Error(message.error.message));
    else call.resolve(message.result);
  });
  const opened = new Promise((resolve) => socket.once("open", resolve));
  return {
    /** @param {string} method @param {object} [params] @returns {Promise<any>} */
    async send(method, params = {}) {
      await opened;
      const id = ++next;
      socket.send(JSON.stringify({ id, method, params }));
      return new Promise((resolve, reject) => waiting.set(id, { resolve, reject }));
    },
    close: () => socket.close(),
  };
}

/** @param {any} session @param {string} expression */
async function evaluate(session, expression) {
  const { result } = await session.send("Runtime.evaluate", { expression, returnByValue: true, awaitPromise: true });
  return result.value;
}

/** @param {any} session @param {string} expression @param {number} timeoutMs */
async function until(session, expression, timeoutMs = 60_000) {
  const start = Date.now();
  while (!(await evaluate(session, expression))) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${expression}`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** @param {any} session @param {string} file */
async function shoot(session, file) {
  const height = await evaluate(session, "document.body.scrollHeight + 16");
  await session.send("Emulation.setDeviceMetricsOverride", { width: 300, height, deviceScaleFactor: 2, mobile: false });
  const { data } = await session.send("Page.captureScreenshot", { format: "png" });
  fs.writeFileSync(file, Buffer.from(data, "base64"));
  console.log(`wrote ${file}`);
}

async function main() {
  const out = path.resolve(process.argv[2] || path.join(REPO, "docs", "screenshots"));
  fs.mkdirSync(out, { recursive: true });
  /** @type {string} */ let html = "";
  const site = http.createServer((request, response) => {
    if (request.url === "/poster.png") response.end(fs.readFileSync(path.join(REPO, "samples", "poster.png")));
    else response.end(html);
  });
  await new Promise((resolve) => site.listen(0, "127.0.0.1", () => resolve(null)));
  const origin = `http://127.0.0.1:${/** @type {any} */ (site.address()).port}`;
  const server = await startServer("classic", ["--port", "0", "--allow-origin", origin]);
  html = page(server.url);
  const debugPort = 9300 + Math.floor(Math.random() * 500);
  const chromium = spawn(process.env.CHROMIUM || "chromium", [
    "--headless=new", "--no-sandbox", "--disable-gpu", `--remote-debugging-port=${debugPort}`, "about:blank",
  ], { stdio: "ignore" });
  try {
    let targets = [];
    for (let i = 0; i < 100 && targets.length === 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 100));
      targets = await fetch(`http://127.0.0.1:${debugPort}/json/list`).then((r) => r.json()).catch(() => []);
    }
    const session = devtools(targets.find((/** @type {any} */ t) => t.type === "page").webSocketDebuggerUrl);
    await session.send("Emulation.setDeviceMetricsOverride", { width: 300, height: 700, deviceScaleFactor: 2, mobile: false });
    await session.send("Page.navigate", { url: origin });
    await until(session, "window.ready && document.getElementById('indicator').textContent === 'Connected'");
    await evaluate(session, "document.getElementById('decompose').click()");
    await until(session, "/^Separating layers/.test(document.getElementById('stage').textContent)");
    await shoot(session, path.join(out, "photoshop-panel-running.png"));
    await until(session, "/^Inserted/.test(document.getElementById('stage').textContent)");
    await evaluate(session, "document.getElementById('pin-seed').click()");
    await new Promise((resolve) => setTimeout(resolve, 200));
    await shoot(session, path.join(out, "photoshop-panel.png"));
    session.close();
  } finally {
    chromium.kill();
    await server.stop();
    site.close();
  }
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
