"use strict";
/** Assertions shared by the end-to-end tests: the fake document against what the server sent. */

const assert = require("node:assert/strict");
const crypto = require("node:crypto");
const { Controller } = require("../src/controller");
const { forDepth } = require("../src/placement");
const { FakeLayer } = require("./fake_photoshop");
const { loadHostOverFake, recordingWebSocket, layersFromFrames, waitFor, testPicture } = require("./helpers");

/** A controller over a fresh fake Photoshop, connected to `url`. @param {string} url */
async function panelFor(url) {
  const { fake, host } = loadHostOverFake();
  const { WebSocketClass, log } = recordingWebSocket();
  const storage = new Map();
  const controller = new Controller({
    host, WebSocketClass,
    storage: { getItem: (/** @type {string} */ k) => storage.get(k) ?? null, setItem: (/** @type {string} */ k, /** @type {string} */ v) => storage.set(k, v) },
  });
  controller.setAddress(url);
  await waitFor(() => controller.connection.state === "connected", 10_000, "connected");
  return { fake, host, controller, log, storage };
}

/** A document holding one pixel layer named Picture with the test picture. */
function pictureDocument(/** @type {any} */ fake, width = 96, height = 64, title = "Poster", bits = 8) {
  const doc = fake.addDocument({ width, height, title, bits });
  fake.inModal = true; // set up the scene as a user would have
  const layer = doc.addAboveActive(new FakeLayer(fake, doc, fake.nextId++, "Picture", "pixel"));
  const picture = testPicture(width, height);
  layer.pixels = { bounds: { left: 0, top: 0, right: width, bottom: height }, data: bits === 16 ? forDepth(picture, 16) : picture };
  fake.inModal = false;
  return { doc, layer };
}

/** @param {any} controller @param {any} job */
function settled(controller, job, timeoutMs = 60_000) {
  return waitFor(() => ["inserted", "orphaned", "failed", "cancelled"].includes(job.status), timeoutMs, `job ${job.op} to settle (now ${job.status}: ${job.stage})`);
}

/**
 * The group's layers are the server's layers: same count, order (index 0 bottom), names,
 * offsets and bytes, and each byte string hashes to the header's sha256.
 * @param {any} group @param {any[]} sent layers from the recorded frames
 */
function assertGroupHoldsLayers(group, sent) {
  assert.equal(group.kind, "group");
  const bottomFirst = [...group.children].reverse();
  assert.equal(bottomFirst.length, sent.length, "layer count");
  assert.ok(sent.length > 0, "the server sent layers");
  sent.forEach((layer, index) => {
    const placed = bottomFirst[index];
    assert.equal(layer.index, index);
    assert.equal(placed.name, layer.name);
    assert.deepEqual(placed.pixels.bounds, { left: layer.x, top: layer.y, right: layer.x + layer.width, bottom: layer.y + layer.height });
    // A 16-bit document holds the server's bytes rescaled to 0..32768; compare at that depth.
    const sent = new Uint8Array(layer.data);
    const expected = placed.pixels.data instanceof Uint16Array ? forDepth(sent, 16) : sent;
    assert.ok(bytesOf(placed.pixels.data).equals(bytesOf(expected)), `layer ${index} pixels are the bytes the server sent`);
    assert.equal(crypto.createHash("sha256").update(sent).digest("hex"), layer.sha256);
  });
}

/** The raw bytes of a typed array. @param {Uint8Array | Uint16Array} typed */
function bytesOf(typed) {
  return Buffer.from(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** One committed history step for the document, named `name`. */
function assertOneHistoryStep(/** @type {any} */ fake, /** @type {number} */ documentID, /** @type {string} */ name) {
  const steps = fake.historySteps.filter((/** @type {any} */ s) => s.documentID === documentID);
  assert.deepEqual(steps, [{ documentID, name, committed: true }]);
}

module.exports = { panelFor, pictureDocument, settled, assertGroupHoldsLayers, assertOneHistoryStep, layersFromFrames };
