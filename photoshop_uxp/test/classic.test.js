"use strict";
/** The panel against the real server with the weight-free classic engine. */

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("./helpers");
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
