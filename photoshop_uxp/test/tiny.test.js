"use strict";
/**
 * The panel against the real server with the tiny engine: the diffusion code path with tiny
 * random weights (noise pixels, real plumbing). Every op, byte for byte.
 */

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { startServer } = require("./helpers");
const { panelFor, pictureDocument, settled, assertGroupHoldsLayers, assertOneHistoryStep, layersFromFrames } = require("./checks");

/** @type {any} */ let server;
/** @type {string | undefined} */ let skip;
before(async () => {
  server = await startServer("tiny");
  if (server.unavailable) skip = `skipped: ${server.unavailable}`;
});
after(async () => { await server?.stop?.(); });

test("generate: a group named after the prompt, on top of the open document", async (t) => {
  if (skip) return t.skip(skip);
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 64, 64);
  const job = await controller.generate({ prompt: "a lighthouse at dusk", layers: 2, seed: 5, steps: 1 });
  await settled(controller, job, 120_000);
  assert.equal(job.status, "inserted", job.error?.message);
  assert.equal(doc.children[0].name, "a lighthouse at dusk");
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, job.id));
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Generate layers");
  controller.stop();
});

test("regenerate: the selected layer's pixels replaced in place, with the selection sent as mask", async (t) => {
  if (skip) return t.skip(skip);
  const { fake, controller, log } = await panelFor(server.url);
  const { doc, layer } = pictureDocument(fake, 64, 64);
  const originalPixels = layer.pixels.data;
  const selection = new Uint8Array(32 * 16).fill(255);
  doc.selectionMask = { bounds: { left: 8, top: 8, right: 40, bottom: 24 }, data: selection };
  const job = await controller.regenerateSelectedLayer({ prompt: "make it green", seed: 4, steps: 1, resolution: 640 });
  await settled(controller, job, 120_000);
  assert.equal(job.status, "inserted", job.error?.message);
  // What went out: the layer at its place, the composite, the selection as an RGBA mask.
  const submit = JSON.parse(String(log.sent.find((f) => typeof f === "string" && JSON.parse(f).type === "submit")));
  assert.deepEqual(submit.params, { prompt: "make it green", seed: 4, steps: 1, resolution: 640 });
  assert.deepEqual(submit.inputs, [
    { name: "layer", width: 64, height: 64, x: 0, y: 0 },
    { name: "document", width: 64, height: 64, x: 0, y: 0 },
    { name: "mask", width: 32, height: 16, x: 8, y: 8 },
  ]);
  const frames = log.sent.slice(log.sent.indexOf(JSON.stringify(submit)) + 1, log.sent.indexOf(JSON.stringify(submit)) + 4);
  assert.ok(Buffer.from(frames[0]).equals(Buffer.from(originalPixels)));
  assert.ok(Buffer.from(frames[2]).equals(Buffer.alloc(32 * 16 * 4, 255)));
  const [sent] = layersFromFrames(log.frames, job.id);
  assert.deepEqual(doc.children, [layer], "no layer added");
  assert.equal(layer.name, "Picture");
  assert.deepEqual(layer.pixels.bounds, { left: sent.x, top: sent.y, right: sent.x + sent.width, bottom: sent.y + sent.height });
  assert.ok(Buffer.from(layer.pixels.data).equals(sent.data));
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Regenerate layer");
  controller.stop();
});

test("split: the selected layer as a group of layers above it", async (t) => {
  if (skip) return t.skip(skip);
  const { fake, controller, log } = await panelFor(server.url);
  const { doc, layer } = pictureDocument(fake, 64, 64);
  const job = await controller.splitSelectedLayer({ layers: 2, seed: 9, steps: 1 });
  await settled(controller, job, 120_000);
  assert.equal(job.status, "inserted", job.error?.message);
  assert.equal(doc.children[1], layer);
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, job.id));
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Split layer");
  controller.stop();
});

test("decompose: the document as layers", async (t) => {
  if (skip) return t.skip(skip);
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 64, 64);
  const job = await controller.decomposeDocument({ layers: 3, seed: 1, steps: 1 });
  await settled(controller, job, 120_000);
  assert.equal(job.status, "inserted", job.error?.message);
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, job.id));
  assertOneHistoryStep(fake, doc.id, "LayerBridge: Decompose into layers");
  controller.stop();
});

test("generate: the panel shows the server's preview while the layers are still being made", async (t) => {
  if (skip) return t.skip(skip);
  const { viewOf } = require("../src/view");
  const { pictureUrl } = require("../src/png");
  const { fake, controller, log } = await panelFor(server.url);
  pictureDocument(fake, 64, 64);
  /** @type {{preview: string | null, status: string, text: string}[]} */
  const seen = [];
  controller.subscribe(() => {
    const job = [...controller.jobs.values()][0];
    const view = viewOf(controller);
    seen.push({ preview: view.preview, status: job?.status, text: view.progress.text });
  });
  const job = await controller.generate({ prompt: "a red kite", layers: 2, seed: 3, steps: 2 });
  await settled(controller, job, 120_000);
  assert.equal(job.status, "inserted", job.error?.message);
  // The preview frame as the server sent it, read from the recorded frames.
  const at = log.frames.findIndex((f) => typeof f === "string" && JSON.parse(f).type === "preview");
  assert.ok(at >= 0, "the server sent a preview");
  const header = JSON.parse(/** @type {string} */ (log.frames[at]));
  const expected = pictureUrl(new Uint8Array(/** @type {Buffer} */ (log.frames[at + 1])), header.width, header.height, 240);
  const shown = seen.filter((s) => s.preview !== null);
  assert.ok(shown.length > 0, "the preview was shown");
  assert.ok(shown.every((s) => s.preview === expected), "the preview frame");
  assert.equal(shown[0].status, "running", `shown while the job ran: ${shown.map((s) => s.status)}`);
  assert.ok(seen.some((s) => /^(Generating|Decoding|Encoding|Separating)/.test(s.text)), seen.map((s) => s.text).join(" | "));
  assert.equal(seen[seen.length - 1].preview, null, "gone once the layers are in");
  controller.stop();
});
