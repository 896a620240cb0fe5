"use strict";
/**
 * What a designer expects of the panel, against the real server (classic engine): errors
 * that stay with their job, layers shown as they arrive, the seed shown and pinnable, the
 * last prompt remembered, the session's history with "insert again", and a document too
 * large for the server refused before it is read, with an offer to work reduced.
 */

const { test, before, after } = require("node:test");
const assert = require("node:assert/strict");
const { Controller } = require("../src/controller");
const { viewOf } = require("../src/view");
const { startServer, waitFor } = require("./helpers");
const { panelFor, pictureDocument, settled, assertGroupHoldsLayers, layersFromFrames } = require("./checks");

/** @type {any} */ let server;
before(async () => { server = await startServer("classic"); });
after(async () => { await server?.stop(); });

/** The submit messages the panel sent. @param {any} log */
function submits(log) {
  return log.sent.filter((/** @type {any} */ f) => typeof f === "string" && JSON.parse(f).type === "submit").map((/** @type {string} */ f) => JSON.parse(f));
}

test("a refused submit fails its own job only: the next job is inserted and nothing else is said", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 64, 48);
  const refused = await controller.decomposeDocument({ layers: 50 });
  await settled(controller, refused);
  assert.equal(refused.status, "failed");
  assert.equal(refused.error?.code, "too_many_layers");
  // The refused submit's input frame is answered too (unexpected_binary, no job): not shown.
  await waitFor(() => log.frames.some((f) => typeof f === "string" && f.includes("unexpected_binary")), 2_000, "the stray answer").catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, 100));
  assert.equal(controller.notice, "", "only the job's own error is shown");
  const good = await controller.decomposeDocument({ layers: 2 });
  await settled(controller, good);
  // Wait for every frame the server sent to arrive before looking at what the panel says.
  await waitFor(() => log.frames.some((f) => typeof f === "string" && f.includes('"done"')), 10_000, "done");
  await new Promise((resolve) => setTimeout(resolve, 200));
  assert.equal(good.status, "inserted", good.error?.message);
  assert.equal(controller.notice, "", "no stray error beside the real one");
  const failed = [...controller.jobs.values()].filter((job) => job.status === "failed");
  assert.deepEqual(failed.map((job) => job.id), [refused.id]);
  assert.equal(doc.children[0].name, "Decomposed");
  controller.stop();
});

test("layers show in the panel as they arrive, and go into the document as one history step at the end", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 640, 480);
  /** @type {{arrived: number, status: string, stage: string}[]} */
  const seen = [];
  controller.subscribe(() => {
    const view = viewOf(controller);
    seen.push({ arrived: view.arrived.length, status: [...controller.jobs.values()][0]?.status, stage: view.progress.text });
  });
  const job = await controller.decomposeDocument({ layers: 4 });
  await settled(controller, job);
  assert.equal(job.status, "inserted", job.error?.message);
  const whileRunning = seen.filter((s) => s.status === "running" && s.arrived > 0);
  assert.ok(whileRunning.length > 0, "thumbnails shown before the job was done");
  assert.ok(seen.some((s) => /^Received layer 1 of \d/.test(s.stage)), seen.map((s) => s.stage).join(" | "));
  assert.ok(!seen.some((s) => /^(peel|regions|fill|background) \d/.test(s.stage)), "no raw stage names");
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, job.id));
  assert.equal(fake.historySteps.length, 1);
  controller.stop();
});

test("the seed is shown, can be pinned for the next job, and the last prompt is remembered", async () => {
  const { fake, controller, log, storage } = await panelFor(server.url);
  pictureDocument(fake, 64, 48);
  const first = await controller.decomposeDocument({ prompt: "a poster", layers: 2 });
  await settled(controller, first);
  const sentSeed = submits(log)[0].params.seed;
  assert.equal(typeof sentSeed, "number", "the panel picks the seed, so it can show it");
  assert.equal(first.seed, sentSeed);
  assert.deepEqual(viewOf(controller).seed, { value: sentSeed, pinned: false });
  assert.match(viewOf(controller).progress.text, new RegExp(`seed ${sentSeed}`));
  controller.pinSeed(first.seed);
  assert.deepEqual(viewOf(controller).seed, { value: sentSeed, pinned: true });
  const second = await controller.decomposeDocument({ prompt: "a poster", layers: 2 });
  await settled(controller, second);
  assert.equal(submits(log)[1].params.seed, sentSeed, "the pinned seed is used again");
  // A panel opened later starts with the last prompt, layer count and pinned seed.
  const reopened = new Controller({
    host: { clientName: () => "test/1" }, WebSocketClass: null,
    storage: { getItem: (/** @type {string} */ k) => storage.get(k) ?? null, setItem: () => {} },
  });
  assert.deepEqual([reopened.last.prompt, reopened.last.layers, reopened.last.seed, reopened.last.seedPinned], ["a poster", 2, sentSeed, true]);
  controller.pinSeed(null);
  const third = await controller.decomposeDocument({ layers: 2 });
  await settled(controller, third);
  assert.notEqual(submits(log)[2].params.seed, undefined);
  controller.stop();
});

test("the session's history: every job with its seed, and a result inserted again as one more step", async () => {
  const { fake, controller, log } = await panelFor(server.url);
  const { doc } = pictureDocument(fake, 80, 60);
  const first = await controller.decomposeDocument({ layers: 2, seed: 11 });
  await settled(controller, first);
  const refused = await controller.decomposeDocument({ layers: 99, seed: 12 });
  await settled(controller, refused);
  const history = viewOf(controller).history;
  assert.deepEqual(history.map((entry) => [entry.job, entry.seed, entry.insertAgain]), [[refused.id, 12, false], [first.id, 11, true]]);
  assert.match(history[1].text, /decompose · 2 layers · seed 11/);
  await controller.insertAgain(first.id);
  assert.equal(doc.children.length, 3, "a second group on top of the first");
  assertGroupHoldsLayers(doc.children[0], layersFromFrames(log.frames, first.id));
  assert.deepEqual(fake.historySteps.map((/** @type {any} */ s) => s.name), ["LayerBridge: Decompose into layers", "LayerBridge: Insert again"]);
  controller.stop();
});

test("a document over the server's max_pixels is refused before it is read, then worked on reduced and scaled back", async () => {
  const small = await startServer("classic", ["--port", "0", "--max-pixels", "1200"]);
  try {
    const { fake, controller, log } = await panelFor(small.url);
    const { doc } = pictureDocument(fake, 80, 60); // 4800 pixels, 4x the limit
    let reads = 0;
    const getPixels = fake.imaging.getPixels;
    fake.imaging.getPixels = async (/** @type {any} */ options) => { reads += 1; return getPixels(options); };
    await assert.rejects(controller.decomposeDocument({ layers: 2 }), /80×60 = 4800 pixels; the server takes at most 1200.*Work at 40×30/);
    assert.equal(reads, 0, "nothing read from the document");
    assert.equal(submits(log).length, 0, "nothing sent");
    const offer = viewOf(controller).offers.find((o) => o.kind === "reduced");
    assert.equal(offer?.text, "Work at 40×30 and scale the layers back");
    const job = await controller.workReduced();
    await settled(controller, job);
    assert.equal(job.status, "inserted", job.error?.message);
    assert.deepEqual(submits(log)[0].inputs, [{ name: "image", width: 40, height: 30, x: 0, y: 0 }]);
    const sent = layersFromFrames(log.frames, job.id);
    const placed = [...doc.children[0].children].reverse();
    assert.equal(placed.length, sent.length);
    sent.forEach((layer, index) => {
      assert.deepEqual(placed[index].pixels.bounds, { left: layer.x * 2, top: layer.y * 2, right: (layer.x + layer.width) * 2, bottom: (layer.y + layer.height) * 2 });
    });
    const background = placed[0].pixels.bounds;
    assert.deepEqual([background.right - background.left, background.bottom - background.top], [80, 60], "the bottom layer covers the document again");
    controller.stop();
  } finally {
    await small.stop();
  }
});
