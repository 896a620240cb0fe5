"use strict";
/**
 * Job state, host-free: what the panel knows about each job it submitted.
 *
 * A job lives through: submitted -> queued -> running -> (layers arrive) -> finished,
 * then the panel inserts it (inserted), or keeps it when its document is gone or
 * Photoshop refused the change (orphaned, offered for a new document). cancelled and failed end it too.
 */

const ACTIVE = ["submitted", "queued", "running", "finished", "inserting"];
const WAITING_FOR_SERVER = ["submitted", "queued", "running"];

/**
 * @typedef {{documentId: number, title: string, width: number, height: number,
 *   layerId?: number, layerName?: string, layerBounds?: import("./placement").Bounds}} Capture
 *   What the panel captured of the document at submit, so results land where the job began.
 * @typedef {{index: number, count: number, name: string, x: number, y: number, width: number,
 *   height: number, sha256: string, data: Uint8Array}} Layer
 * @typedef {{width: number, height: number, data: Uint8Array}} Picture
 * @typedef {{id: string, op: string, prompt: string, capture: Capture | null, status: string,
 *   stage: string, fraction: number, position: number | null, layers: Layer[], count: number | null,
 *   width: number | null, height: number | null, error: {code: string, message: string} | null,
 *   cancelRequested: boolean, sourceLayerName?: string, seed: number | null,
 *   step: number | null, steps: number | null, startedAt: number | null, submittedAt: number,
 *   preview: Picture | null, scale: number}} Job
 *   `scale` is the document's size over the size sent (1, or more when the job works reduced).
 */

/**
 * @param {{id: string, op: string, prompt?: string, capture: Capture | null, seed?: number | null,
 *   scale?: number, now?: number}} spec @returns {Job}
 */
function newJob({ id, op, prompt = "", capture, seed = null, scale = 1, now = Date.now() }) {
  return {
    id, op, prompt, capture,
    status: "submitted", stage: "sending", fraction: 0, position: null,
    layers: [], count: null, width: null, height: null, error: null, cancelRequested: false,
    sourceLayerName: capture?.layerName, seed, step: null, steps: null,
    startedAt: null, submittedAt: now, preview: null, scale,
  };
}

/**
 * Fold one server message into its job. Returns true when the job just finished
 * (every layer here), which is the moment to insert it.
 * @param {Job} job @param {Record<string, any>} message
 */
function applyMessage(job, message) {
  // Once finished (or ended), late or repeated messages (a fetch racing a reconnect) change nothing.
  if (!WAITING_FOR_SERVER.includes(job.status)) return false;
  switch (message.type) {
    case "queued":
      Object.assign(job, { status: "queued", position: message.position, stage: "queued" });
      return false;
    case "progress":
      Object.assign(job, {
        status: "running", fraction: message.fraction, stage: message.stage,
        step: message.step ?? null, steps: message.steps ?? null, startedAt: job.startedAt ?? Date.now(),
      });
      return false;
    case "preview":
      job.preview = { width: message.width, height: message.height, data: message.data };
      return false;
    case "layer":
      // A fetch after a reconnect re-sends layers we may already hold: keyed by index, no duplicates.
      job.layers[message.index] = /** @type {Layer} */ (message);
      Object.assign(job, { status: "running", count: message.count, stage: "received" });
      return false;
    case "done":
      Object.assign(job, { status: "finished", count: message.layers, width: message.width, height: message.height, fraction: 1, stage: "done" });
      return true;
    case "cancelled":
      Object.assign(job, { status: "cancelled", stage: "cancelled", layers: [] });
      return false;
    case "error":
      Object.assign(job, { status: "failed", stage: "failed", error: { code: message.code, message: message.message } });
      return false;
    default:
      return false;
  }
}

/** @param {Job} job */
function isActive(job) {
  return ACTIVE.includes(job.status);
}

/** @param {Job} job the server still owes this job messages */
function awaitsServer(job) {
  return WAITING_FOR_SERVER.includes(job.status);
}

/**
 * The result could not go where it belonged: keep it and offer a new document.
 * @param {Job} job @param {string} why
 */
function orphan(job, why) {
  Object.assign(job, { status: "orphaned", stage: `${why}: insert into a new document?` });
}

/** @param {Job} job @param {string} code @param {string} message */
function fail(job, code, message) {
  Object.assign(job, { status: "failed", stage: "failed", error: { code, message } });
}

module.exports = { newJob, applyMessage, isActive, awaitsServer, fail, orphan };
