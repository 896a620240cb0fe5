"use strict";
/** The panel against the real server with the weight-free classic engine. */

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer, waitFor } = require("./helpers");
const { panelFor, pictureDocument, settled, assertGroupHoldsLayers, assertOneHistoryStep, layersFromFrames } = require("./checks");

/** @type {any} */ let server;
before(async () => { server = await startServer("classic"); });
after(async () => { await server?.stop(); });

test("decompose: a group named Decomposed on top, the server's layers in order, one history step", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake);
  const job = await controller.decomposeDocument({ layers: "auto", seed: 7 });
  await settled(controller, job);
  assert.equal(job.status, "inserted", job.error?.message);
  const group = doc.children[0];
  assert.equal(group.name, "Decomposed");
  assertGroupHoldsLayers(group, layersFromFrames(log.frames, job.id));
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Decompose into layers");
  assert.ok(!fake.inModal && fake.openSuspensions.size === 0);
  controller.stop();
});

test("16-bit document: the layers are the server's bytes at Photoshop's 16-bit scale", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 64, 48, "Deep", 16);
  const job = await controller.decomposeDocument({ layers: 2, seed: 2 });
  await settled(controller, job);
  assert.equal(job.status, "inserted", job.error?.message);
  assert.ok(doc.children[0].children[0].pixels.data instanceof Uint16Array);
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, job.id));
  controller.stop();
});

test("split: the selected layer's parts in a group just above it, the source hidden, one history step", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc, layer } = pictureDocument(fake, 80, 60);
  // Move the layer off the origin so the offsets are exercised.
  layer.pixels.bounds = { left: 13, top: -4, right: 93, bottom: 56 };
  const job = await controller.splitSelectedLayer({ layers: 3, seed: 1 });
  await settled(controller, job);
  assert.equal(job.status, "inserted", job.error?.message);
  const [group, source] = doc.children;
  assert.equal(group.name, "Picture (split)");
  assert.equal(source, layer);
  assert.equal(layer.visible, false);
  const sent = layersFromFrames(log.frames, job.id);
  assert.equal(sent.length, 3);
  assertGroupHoldsLayers(group, sent);
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Split layer");
  controller.stop();
});

test("cancel: a running job stops, nothing is inserted, no history step", async () => {
  const { fake, controller } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 1600, 1200);
  const job = await controller.decomposeDocument({ layers: 8 });
  await waitFor(() => job.status === "queued" || job.status === "running", 10_000, "job queued");
  controller.cancel();
  await settled(controller, job);
  assert.equal(job.status, "cancelled");
  assert.equal(doc.children.length, 1, "no group added");
  assert.deepEqual(fake.historySteps, []);
  controller.stop();
});

test("reconnect: the connection dies mid-job, the panel reconnects, fetches, and inserts every layer", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 160, 120);
  const states = [];
  controller.subscribe(() => states.push(controller.connection.state));
  let killed = false;
  log.onFrame = (frame, socket) => {
    if (!killed && typeof frame !== "string") { killed = true; socket.kill(); }
  };
  const job = await controller.decomposeDocument({ layers: 4, seed: 3 });
  await settled(controller, job);
  assert.ok(killed, "the connection was killed after the first layer");
  assert.ok(states.includes("reconnecting"), `states: ${states}`);
  assert.equal(log.sockets.length, 2, "one reconnect");
  assert.ok(log.sent.includes(JSON.stringify({ type: "fetch", job: job.id })), "fetched after the reconnect");
  assert.equal(job.status, "inserted", job.error?.message);
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, job.id));
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Decompose into layers");
  controller.stop();
});

test("closed document: the result is kept and goes into a new document on request", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 90, 70);
  const job = await controller.decomposeDocument({ layers: 3 });
  doc.closeWithoutSaving();
  await settled(controller, job);
  assert.equal(job.status, "orphaned");
  assert.match(job.stage, /new document/);
  await controller.insertIntoNewDocument(job.id);
  assert.equal(job.status, "inserted");
  const created = fake.documents[0];
  assert.notEqual(created.id, doc.id);
  assert.deepEqual([created.width, created.height], [90, 70]);
  assertGroupHoldsLayers(created.children[0], layersFromFrames(log.frames, job.id));
  assertOneHistoryStep(fake, created.id, "LayerBridge: Decompose into layers");
  controller.stop();
});

test("Photoshop refuses the change: the step is rolled back, the result kept and offered", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc, layer } = pictureDocument(fake, 80, 60);
  const putPixels = fake.imaging.putPixels;
  let calls = 0;
  fake.imaging.putPixels = async (/** @type {any} */ options) => {
    if (++calls === 2) throw new Error("Could not complete the command because the layer is locked");
    return putPixels(options);
  };
  const job = await controller.decomposeDocument({ layers: 3 });
  await settled(controller, job);
  assert.equal(job.status, "orphaned");
  assert.match(job.stage, /layer is locked.*new document/);
  assert.deepEqual(doc.children, [layer], "the half-made group is rolled back");
  assert.deepEqual(fake.historySteps, [{ documentID: doc.id, name: "LayerBridge: Decompose into layers", committed: false }]);
  fake.imaging.putPixels = putPixels;
  await controller.insertIntoNewDocument(job.id);
  assert.equal(job.status, "inserted");
  assertGroupHoldsLayers(fake.documents[1].children[0], layersFromFrames(log.frames, job.id));
  controller.stop();
});

test("refused before anything is sent: a 32-bit document, a group as the selected layer", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 32, 32);
  fake.inModal = true;
  await doc.createLayerGroup({ name: "Folder" }); // becomes the selected layer
  fake.inModal = false;
  await assert.rejects(controller.splitSelectedLayer(), /"Folder" is not a pixel layer/);
  fake.addDocument({ width: 32, height: 32, bits: 32 });
  await assert.rejects(controller.decomposeDocument(), /8- and 16-bit documents/);
  assert.equal(controller.jobs.size, 0);
  assert.ok(!log.sent.some((f) => typeof f === "string" && f.includes('"submit"')));
  controller.stop();
});

test("server down: the panel says how to start it, refuses jobs, and connects once it runs", async () => {
  const gone = await startServer("classic");
  await gone.stop();
  const { loadHostOverFake, recordingWebSocket } = require("./helpers");
  const { Controller } = require("../src/controller");
  const { fake, host } = loadHostOverFake();
  pictureDocument(fake);
  const controller = new Controller({ host, WebSocketClass: recordingWebSocket().WebSocketClass });
  controller.setAddress(gone.url);
  await waitFor(() => controller.connection.state === "down", 5_000, "down");
  assert.match(controller.connection.detail, /Server not running at ws:\/\/127\.0\.0\.1:\d+\. Start it with: layerbridge serve/);
  const job = await controller.decomposeDocument();
  assert.equal(job.status, "failed");
  assert.match(job.error?.message || "", /layerbridge serve/);
  const again = await startServer("classic", ["--port", String(gone.port)]);
  try {
    await waitFor(() => controller.connection.state === "connected", 15_000, "connected after the server started");
    /** @type {string[]} */
    const states = [];
    controller.subscribe(() => states.push(controller.connection.state));
    await again.stop();
    // A lost server is first "reconnecting", then "down" after a few tries: it may be either by now.
    await waitFor(() => states.includes("reconnecting"), 5_000, "reconnecting after the server stopped");
  } finally {
    controller.stop();
    await again.stop();
  }
});
