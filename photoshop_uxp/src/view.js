"use strict";
/**
 * What the panel shows, computed from the controller's state (host-free, so tests can
 * check it): the connection indicator, the progress bar with a readable stage, the preview
 * and the layers received so far, which actions work (and why not), the seed, the session's
 * history, and offers such as "Insert into a new document".
 */

const { startCommand } = require("./connection");
const { stageText, remainingSeconds, durationText } = require("./stages");
const { pictureUrl } = require("./png");

const INDICATOR = {
  connecting: { label: "Connecting…", tone: "busy" },
  connected: { label: "Connected", tone: "ok" },
  reconnecting: { label: "Reconnecting…", tone: "busy" },
  down: { label: "Server not running", tone: "error" },
  mismatch: { label: "Version mismatch", tone: "error" },
  unauthorized: { label: "Wrong token", tone: "error" },
  stopped: { label: "Not connected", tone: "error" },
};

/** What each action needs from the engine, said as what would make it work. */
const NEEDS = {
  generate: "paints new images from a prompt",
  decompose: "splits the document into layers",
  regenerate: "repaints a layer from a prompt",
  split: "splits a layer into layers",
};

/** Picture URLs made once per picture (the view is recomputed on every message). */
const pictures = new WeakMap();

/** @param {{width: number, height: number, data: Uint8Array}} picture @param {number} size */
function urlOf(picture, size) {
  let url = pictures.get(picture.data);
  if (!url) {
    url = pictureUrl(picture.data, picture.width, picture.height, size);
    pictures.set(picture.data, url);
  }
  return url;
}

/** @param {InstanceType<typeof import("./controller").Controller>} controller @param {number} [now] */
function viewOf(controller, now = Date.now()) {
  const { state, detail, welcome } = controller.connection;
  const jobs = [...controller.jobs.values()];
  const running = controller.activeJobs();
  const latest = running[running.length - 1] || jobs[jobs.length - 1];
  const actions = actionsOf(controller);
  return {
    indicator: {
      ...INDICATOR[state],
      detail,
      command: state === "down" ? startCommand(controller.connection.url) : null,
    },
    progress: latest ? progressOf(latest, now) : { fraction: 0, text: "" },
    preview: latest?.preview && running.includes(latest) ? urlOf(latest.preview, 240) : null,
    arrived: latest && running.includes(latest) ? latest.layers.filter(Boolean).map((layer) => ({ name: layer.name, url: urlOf(layer, 48) })) : [],
    seed: latest ? { value: latest.seed, pinned: Boolean(controller.last.seedPinned && controller.last.seed === latest.seed) } : null,
    actions,
    enabled: Object.fromEntries(Object.entries(actions).map(([name, action]) => [name, action.enabled])),
    layerRange: welcome ? welcome.capabilities.layers : { min: 1, max: 10 },
    offers: offersOf(controller, jobs),
    history: controller.history().map((job) => ({
      job: job.id,
      text: historyText(job),
      seed: job.seed,
      insertAgain: job.status === "inserted" && job.layers.length > 0,
    })),
    last: controller.last,
    notice: controller.notice,
  };
}

/**
 * Each action, whether it works now, and if not why and what would make it work.
 * @param {InstanceType<typeof import("./controller").Controller>} controller
 */
function actionsOf(controller) {
  const { state, welcome } = controller.connection;
  const ops = welcome ? welcome.capabilities.ops : [];
  const engine = welcome ? welcome.engine : "";
  const notConnected = state === "down"
    ? `The server is not running: start it with ${startCommand(controller.connection.url)}.`
    : "Not connected to the LayerBridge server yet.";
  /** @type {Record<string, {enabled: boolean, why: string}>} */
  const actions = {};
  for (const op of /** @type {(keyof typeof NEEDS)[]} */ (Object.keys(NEEDS))) {
    if (state !== "connected") actions[op] = { enabled: false, why: notConnected };
    else if (!ops.includes(op)) {
      actions[op] = { enabled: false, why: `The ${engine} engine does not run ${op}: start the server with an engine that ${NEEDS[op]} (layerbridge serve --engine qwen, on a GPU).` };
    } else actions[op] = { enabled: true, why: "" };
  }
  const cancellable = controller.activeJobs().some((job) => ["submitted", "queued", "running"].includes(job.status));
  actions.cancel = { enabled: cancellable, why: cancellable ? "" : "No job is running." };
  return actions;
}

/** @param {InstanceType<typeof import("./controller").Controller>} controller @param {import("./jobs").Job[]} jobs */
function offersOf(controller, jobs) {
  const offers = jobs.filter((job) => job.status === "orphaned").map((job) => ({ kind: "new-document", job: job.id, text: `Insert "${job.prompt || job.op}" into a new document` }));
  const reduced = controller.reducedOffer;
  if (reduced) offers.push({ kind: "reduced", job: "", text: `Work at ${reduced.width}×${reduced.height} and scale the layers back` });
  return offers;
}

/** @param {import("./jobs").Job} job @param {number} [now] */
function progressOf(job, now = Date.now()) {
  if (job.status === "queued") return { fraction: 0, text: job.position ? `Queued (${job.position} ahead)` : "Queued: runs next" };
  if (job.status === "failed") return { fraction: 0, text: `Failed: ${job.error?.message}` };
  if (job.status === "cancelled") return { fraction: 0, text: "Cancelled" };
  if (job.status === "inserted") return { fraction: 1, text: `Inserted ${job.count ?? job.layers.length} layer(s) · seed ${job.seed}` };
  if (job.status === "submitted") return { fraction: 0, text: "Sending the job" };
  if (job.status === "finished" || job.status === "inserting") return { fraction: 1, text: "Inserting the layers" };
  if (job.status === "orphaned") return { fraction: 1, text: job.stage };
  if (job.cancelRequested) return { fraction: job.fraction, text: `Cancelling ${Math.round(job.fraction * 100)}%` };
  const received = job.layers.filter(Boolean).length;
  const stage = job.stage === "received" ? `Received layer ${received} of ${job.count}` : stageText(job.stage, job.step, job.steps);
  let text = `${stage} ${Math.round(job.fraction * 100)}%`;
  const left = job.startedAt ? remainingSeconds(job.fraction, (now - job.startedAt) / 1000, job.step, job.steps) : null;
  if (left !== null) text += ` · ${durationText(left)}`;
  return { fraction: job.fraction, text };
}

/** @param {import("./jobs").Job} job */
function historyText(job) {
  const what = job.prompt ? `${job.op} "${job.prompt.length > 40 ? `${job.prompt.slice(0, 39)}…` : job.prompt}"` : job.op;
  const outcome = { inserted: `${job.count ?? 0} layers`, failed: "failed", cancelled: "cancelled", orphaned: "not placed" }[job.status] || job.status;
  return `${what} · ${outcome} · seed ${job.seed}`;
}

module.exports = { viewOf, progressOf, actionsOf };
