"use strict";
/** Host-free pieces on their own: protocol framing, checksums, pixel maths, states, the package. */

const { test } = require("node:test");
const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const fs = require("node:fs");
const os = require("node:os");
const path = require("node:path");
const { WebSocketServer } = require("ws");
const JSZip = require("jszip");
const Ajv = require("ajv");
const { ClientConnection, ProtocolError, submitFrames, helloMessage } = require("../src/protocol");
const { sha256Hex } = require("../src/sha256");
const { toRGBA8, groupName, insertionOrder } = require("../src/placement");
const { Connection } = require("../src/connection");
const { Controller } = require("../src/controller");
const { viewOf } = require("../src/view");
const { newJob, applyMessage } = require("../src/jobs");
const { buildCcx } = require("../scripts/package");
const { REPO_ROOT, LAYERBRIDGE_BIN, waitFor } = require("./helpers");

const vectors = JSON.parse(fs.readFileSync(path.join(REPO_ROOT, "shared", "vectors.json"), "utf8"));

test("every valid server message of the shared vectors comes out whole, pixels paired with their header", () => {
  const reader = new ClientConnection();
  for (const message of vectors.server_messages) {
    const text = JSON.stringify(message);
    if (message.type === "layer" || message.type === "preview") {
      assert.deepEqual(reader.receive(text), []);
      const pixels = new Uint8Array(message.width * message.height * 4).fill(7);
      assert.deepEqual(reader.receive(pixels.buffer), [{ ...message, data: pixels }]);
    } else {
      assert.deepEqual(reader.receive(text), [message]);
    }
  }
});

test("out-of-step frames are protocol errors with the spec's codes", () => {
  /** @param {() => void} fn */
  const codeOf = (fn) => {
    try {
      fn();
    } catch (error) {
      assert.ok(error instanceof ProtocolError);
      return error.code;
    }
    return assert.fail("no ProtocolError");
  };
  assert.equal(codeOf(() => new ClientConnection().receive(new ArrayBuffer(4))), "unexpected_binary");
  assert.equal(codeOf(() => new ClientConnection().receive("{not json")), "bad_json");
  assert.equal(codeOf(() => new ClientConnection().receive("[1]")), "bad_message");
  const header = JSON.stringify({ type: "layer", job: "j", index: 0, count: 1, name: "a", x: 0, y: 0, width: 2, height: 1, sha256: "" });
  const afterHeader = new ClientConnection();
  afterHeader.receive(header);
  assert.equal(codeOf(() => afterHeader.receive('{"type":"done"}')), "missing_binary");
  const short = new ClientConnection();
  short.receive(header);
  assert.equal(codeOf(() => short.receive(new Uint8Array(7))), "wrong_byte_count");
});

test("submit frames: the JSON then one binary frame per input; hello names the protocol", () => {
  const data = new Uint8Array(2 * 3 * 4);
  const [json, pixels, ...rest] = submitFrames("j-1", "split", { layers: 3 }, [{ name: "layer", width: 2, height: 3, x: -1, y: 5, data }]);
  assert.deepEqual(JSON.parse(/** @type {string} */ (json)), { type: "submit", job: "j-1", op: "split", params: { layers: 3 }, inputs: [{ name: "layer", width: 2, height: 3, x: -1, y: 5 }] });
  assert.equal(pixels, data);
  assert.deepEqual(rest, []);
  assert.throws(() => submitFrames("j 1", "split", {}, []), /bad job id/);
  assert.throws(() => submitFrames("j", "split", {}, [{ name: "layer", width: 2, height: 2, x: 0, y: 0, data }]), /bytes/);
  assert.deepEqual(helloMessage("photoshop-uxp/0.1.0"), { type: "hello", protocol: 1, client: "photoshop-uxp/0.1.0" });
});

test("the fallback SHA-256 matches node's", () => {
  for (const size of [0, 1, 55, 56, 63, 64, 65, 1000, 4099]) {
    const bytes = crypto.randomBytes(size);
    assert.equal(sha256Hex(new Uint8Array(bytes)), crypto.createHash("sha256").update(bytes).digest("hex"), `${size} bytes`);
  }
});

test("pixels become RGBA8: RGB gets alpha 255, a selection becomes white with its value as alpha", () => {
  assert.deepEqual([...toRGBA8(new Uint8Array([1, 2, 3, 4, 5, 6]), 3)], [1, 2, 3, 255, 4, 5, 6, 255]);
  assert.deepEqual([...toRGBA8(new Uint8Array([0, 128]), 1)], [255, 255, 255, 0, 255, 255, 255, 128]);
  const rgba = new Uint8Array([9, 9, 9, 9]);
  assert.equal(toRGBA8(rgba, 4), rgba);
});

test("groups are named after the prompt, else Decomposed; layers go in index order", () => {
  assert.equal(groupName({ op: "generate", prompt: "  a red  fox " }), "a red fox");
  assert.equal(groupName({ op: "decompose", prompt: "" }), "Decomposed");
  assert.equal(groupName({ op: "split", sourceLayerName: "Sky" }), "Sky (split)");
  assert.equal(groupName({ op: "generate", prompt: "x".repeat(100) }).length, 60);
  const layer = (/** @type {number} */ index) => ({ index, name: "", x: 0, y: 0, width: 1, height: 1, data: new Uint8Array(4) });
  assert.deepEqual(insertionOrder([layer(0), layer(1)], 2).map((l) => l.name), ["Layer 1", "Layer 2"]);
  assert.throws(() => insertionOrder([layer(0)], 2), /layer 1 of 2 never arrived/);
});

/** A stand-in server that answers hello with `reply`. @param {object} reply */
async function fakeServer(reply) {
  const server = new WebSocketServer({ host: "127.0.0.1", port: 0 });
  await new Promise((resolve) => server.once("listening", resolve));
  server.on("connection", (socket) => socket.on("message", () => socket.send(JSON.stringify(reply))));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
  return { url: `ws://127.0.0.1:${port}`, close: () => new Promise((resolve) => server.close(resolve)) };
}

for (const [name, reply, state] of [
  ["a protocol_mismatch error", { type: "error", code: "protocol_mismatch", message: "update the plug-in and the server to the same release" }, "mismatch"],
  ["a welcome of another protocol", { type: "welcome", protocol: 2, server: "layerbridge/9", engine: "classic", capabilities: {} }, "mismatch"],
  ["an unauthorized error", { type: "error", code: "unauthorized", message: "wrong or missing token" }, "unauthorized"],
]) {
  test(`${name} stops reconnecting and says so`, async () => {
    const server = await fakeServer(reply);
    const connection = new Connection({ url: server.url, client: "test/1", WebSocketClass: require("ws") });
    connection.start();
    await waitFor(() => connection.state === state, 5_000, state);
    await new Promise((resolve) => setTimeout(resolve, 400));
    assert.equal(connection.state, state, "no reconnect loop");
    assert.ok(connection.detail.length > 10);
    connection.stop();
    await server.close();
  });
}

test("the view shows the start command when the server is down, and the address is remembered", () => {
  const storage = new Map();
  const store = { getItem: (/** @type {string} */ k) => storage.get(k) ?? null, setItem: (/** @type {string} */ k, /** @type {string} */ v) => storage.set(k, v) };
  const host = { clientName: () => "test/1" };
  const controller = new Controller({ host, WebSocketClass: class { close() {} }, storage: store });
  controller.connection.setState("down", "Server not running at ws://127.0.0.1:7861. Start it with: layerbridge serve");
  const view = viewOf(controller);
  assert.equal(view.indicator.label, "Server not running");
  assert.equal(view.indicator.command, "layerbridge serve");
  assert.equal(view.enabled.generate, false);
  controller.connection.options.WebSocketClass = class { close() {} };
  controller.setAddress("ws://localhost:7999");
  controller.connection.setState("down", "");
  assert.equal(viewOf(controller).indicator.command, "layerbridge serve --port 7999");
  controller.stop();
  assert.equal(new Controller({ host, WebSocketClass: null, storage: store }).settings.address, "ws://localhost:7999");
});

test("buttons follow the engine's ops, and the progress bar the latest job", () => {
  const controller = new Controller({ host: { clientName: () => "test/1" }, WebSocketClass: null });
  controller.connection.welcome = { capabilities: { ops: ["decompose", "split"], layers: { min: 1, max: 10 } } };
  controller.connection.state = "connected";
  const job = newJob({ id: "j", op: "decompose", capture: null });
  controller.jobs.set(job.id, job);
  applyMessage(job, { type: "progress", job: "j", fraction: 0.25, stage: "peel" });
  const view = viewOf(controller);
  assert.deepEqual(view.enabled, { generate: false, decompose: true, regenerate: false, split: true, cancel: true });
  assert.equal(view.progress.fraction, 0.25);
  assert.equal(view.progress.text, "Separating layers 25%");
  applyMessage(job, { type: "error", job: "j", code: "engine_failed", message: "it broke" });
  assert.deepEqual(viewOf(controller).progress, { fraction: 0, text: "Failed: it broke" });
  assert.equal(viewOf(controller).enabled.cancel, false);
});

test("the .ccx: a zip with a valid v5 manifest at its root, every shipped file, the network any server needs", async () => {
  const outDir = fs.mkdtempSync(path.join(os.tmpdir(), "layerbridge-ccx-"));
  const ccx = await buildCcx({ outDir });
  assert.match(path.basename(ccx), /^layerbridge-\d+\.\d+\.\d+\.ccx$/);
  const zip = await JSZip.loadAsync(fs.readFileSync(ccx));
  const manifest = JSON.parse(await /** @type {any} */ (zip.file("manifest.json")).async("string"));
  const schema = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "schema", "manifest.schema.json"), "utf8"));
  const validate = new Ajv({ allErrors: true }).compile(schema);
  assert.ok(validate(manifest), JSON.stringify(validate.errors));
  assert.deepEqual(manifest.host, { app: "PS", minVersion: "24.4.0" });
  // UXP names either exact origins (scheme, host and port) or "all": a port the user picks
  // and a team server's host are only reachable with "all" (see the README).
  assert.equal(manifest.requiredPermissions.network.domains, "all");
  // Everything the panel loads is inside: the main page, its scripts, each require("./...").
  const names = Object.keys(zip.files);
  assert.ok(names.includes(manifest.main));
  const html = await /** @type {any} */ (zip.file(manifest.main)).async("string");
  for (const [, src] of html.matchAll(/<script src="([^"]+)"/g)) assert.ok(names.includes(src), src);
  for (const name of names.filter((n) => n.endsWith(".js"))) {
    const code = await /** @type {any} */ (zip.file(name)).async("string");
    for (const [, target] of code.matchAll(/require\("(\.[^"]+)"\)/g)) {
      const resolved = path.posix.normalize(path.posix.join(path.posix.dirname(name), target));
      assert.ok(names.includes(resolved) || names.includes(`${resolved}.js`), `${name} requires ${target}`);
    }
  }
  assert.ok(!names.some((n) => n.startsWith("test/") || n.startsWith("node_modules/")));
});

test("stage names read as words, the same table as the server package's", async () => {
  const { STAGES, stageText, remainingSeconds } = require("../src/stages");
  const python = path.join(path.dirname(LAYERBRIDGE_BIN), "python");
  const { execFileSync } = require("node:child_process");
  const fromPython = JSON.parse(execFileSync(python, ["-c", "import json; from layerbridge.stages import STAGES; print(json.dumps(STAGES))"], { encoding: "utf8" }));
  assert.deepEqual(STAGES, fromPython);
  assert.equal(stageText("peel"), "Separating layers");
  assert.equal(stageText("denoise", 3, 20), "Generating (step 3 of 20)");
  assert.equal(stageText("some_new_stage"), "Some new stage");
  assert.equal(remainingSeconds(0.5, 10, 5, 10), 10);
  assert.equal(remainingSeconds(0.5, 10), null, "no estimate without model steps");
});

test("the panel's PNGs decode to the pixels they were made from", () => {
  const zlib = require("node:zlib");
  const { encodePng, crc32 } = require("../src/png");
  const width = 300, height = 250; // over 64 KiB of rows: several stored blocks
  const rgba = new Uint8Array(width * height * 4).map((_, i) => (i * 7) % 256);
  const png = Buffer.from(encodePng(rgba, width, height));
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  /** @type {Buffer[]} */ const idat = [];
  for (let at = 8; at < png.length;) {
    const length = png.readUInt32BE(at), type = png.toString("latin1", at + 4, at + 8);
    assert.equal(png.readUInt32BE(at + 8 + length), crc32(png.subarray(at + 4, at + 8 + length)), `${type} checksum`);
    if (type === "IHDR") assert.deepEqual([png.readUInt32BE(at + 8), png.readUInt32BE(at + 12), png[at + 16], png[at + 17]], [width, height, 8, 6]);
    if (type === "IDAT") idat.push(png.subarray(at + 8, at + 8 + length));
    at += 12 + length;
  }
  const raw = zlib.inflateSync(Buffer.concat(idat));
  for (let y = 0; y < height; y++) {
    assert.equal(raw[y * (width * 4 + 1)], 0);
    assert.ok(raw.subarray(y * (width * 4 + 1) + 1, (y + 1) * (width * 4 + 1)).equals(Buffer.from(rgba.subarray(y * width * 4, (y + 1) * width * 4))));
  }
});

test("a layer made at a reduced size goes back at the document's scale, its place and pixels", () => {
  const { scaleLayer, reducedSize } = require("../src/placement");
  assert.deepEqual(reducedSize(4096, 4096, 4096 * 4096), { width: 4096, height: 4096 });
  const fitted = reducedSize(8000, 4000, 4096 * 4096);
  assert.ok(fitted.width * fitted.height <= 4096 * 4096, "within the limit");
  assert.ok(fitted.width * fitted.height > 4096 * 4096 * 0.99, "as large as the limit allows");
  assert.ok(Math.abs(fitted.width / fitted.height - 2) < 0.01, "the same shape");
  const red = new Uint8Array([200, 0, 0, 255, 200, 0, 0, 255, 200, 0, 0, 255, 200, 0, 0, 255]);
  const big = scaleLayer({ name: "r", x: 3, y: 1, width: 2, height: 2, data: red }, 2);
  assert.deepEqual([big.x, big.y, big.width, big.height], [6, 2, 4, 4]);
  for (let i = 0; i < big.data.length; i += 4) assert.deepEqual([...big.data.subarray(i, i + 4)], [200, 0, 0, 255]);
  const same = { name: "s", x: 0, y: 0, width: 1, height: 1, data: new Uint8Array(4) };
  assert.equal(scaleLayer(same, 1), same);
});

test("every action the engine cannot run says why and what would enable it", () => {
  const controller = new Controller({ host: { clientName: () => "test/1" }, WebSocketClass: null });
  controller.connection.state = "down";
  let actions = viewOf(controller).actions;
  assert.match(actions.decompose.why, /not running: start it with layerbridge serve/);
  controller.connection.welcome = { engine: "classic", capabilities: { ops: ["decompose", "split"], layers: { min: 1, max: 10 } } };
  controller.connection.state = "connected";
  actions = viewOf(controller).actions;
  assert.deepEqual([actions.decompose.enabled, actions.split.enabled], [true, true]);
  for (const op of ["generate", "regenerate"]) {
    assert.equal(actions[/** @type {"generate"} */ (op)].enabled, false);
    assert.match(actions[/** @type {"generate"} */ (op)].why, new RegExp(`classic engine does not run ${op}.*--engine qwen`));
  }
  assert.equal(actions.cancel.why, "No job is running.");
});
