"use strict";
/**
 * The panel's logic, host-free: actions in (Generate, Decompose, ...), jobs over the
 * connection, results handed to the host adapter. Everything Photoshop-specific sits
 * behind `host` (src/photoshop_host.js in the panel, the same file over a fake in tests).
 */

const { Connection } = require("./connection");
const { submitFrames, jobMessage, newJobId } = require("./protocol");
const { digestHex } = require("./sha256");
const { newJob, applyMessage, isActive, awaitsServer, fail, orphan } = require("./jobs");
const { groupName, insertionOrder, generateSize } = require("./placement");

const DEFAULT_ADDRESS = "ws://127.0.0.1:7861";
const SETTINGS_KEY = "layerbridge.settings";

/** @typedef {import("./jobs").Job} Job */
/**
 * What the user chose; each op takes its own subset (shared/PROTOCOL.md, "Ops").
 * @typedef {{prompt?: string, layers?: number | "auto", seed?: number | null, steps?: number | null,
 *   resolution?: number | null}} Options
 */

/** The params each op takes from the panel's options. */
const OP_PARAMS = {
  generate: ["prompt", "layers", "seed", "steps", "resolution"],
  decompose: ["prompt", "layers", "seed", "steps", "resolution"],
  regenerate: ["prompt", "seed", "steps", "resolution"],
  split: ["layers", "seed", "steps", "resolution"],
};

/**
 * The op's params from the options, leaving out unset ones (the server's defaults apply).
 * @param {keyof typeof OP_PARAMS} op @param {Options} options
 */
function paramsFor(op, options) {
  /** @type {Record<string, any>} */
  const params = {};
  for (const name of OP_PARAMS[op]) {
    const value = options[/** @type {keyof Options} */ (name)];
    if (value !== null && value !== undefined && value !== "") params[name] = value;
  }
  return params;
}

class Controller {
  /**
   * @param {{host: any, WebSocketClass: any, storage?: {getItem: Function, setItem: Function},
   *   timers?: {setTimeout: Function, clearTimeout: Function}}} options
   */
  constructor({ host, WebSocketClass, storage, timers }) {
    this.host = host;
    this.storage = storage;
    this.settings = { address: DEFAULT_ADDRESS, token: "", ...this.loadSettings() };
    /** @type {Map<string, Job>} */
    this.jobs = new Map();
    /** @type {Set<(controller: Controller) => void>} */
    this.listeners = new Set();
    this.notice = "";
    /** Photoshop runs one modal scope at a time: every host call goes through this queue. @type {Promise<unknown>} */
    this.hostQueue = Promise.resolve();
    this.connection = new Connection({
      url: this.settings.address,
      token: this.settings.token,
      client: host.clientName(),
      WebSocketClass,
      timers,
      onState: () => this.changed(),
      onWelcome: () => this.resumeJobs(),
      onMessage: (message) => this.onMessage(message),
    });
  }

  start() {
    this.connection.start();
  }

  stop() {
    this.connection.stop();
  }

  /** @param {(controller: Controller) => void} listener */
  subscribe(listener) {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  changed() {
    for (const listener of this.listeners) listener(this);
  }

  loadSettings() {
    try {
      return JSON.parse(this.storage?.getItem(SETTINGS_KEY) || "{}");
    } catch {
      return {};
    }
  }

  /** Remember a new server address (and token) and connect there. @param {string} address @param {string} [token] */
  setAddress(address, token = this.settings.token) {
    this.settings = { address: address.trim() || DEFAULT_ADDRESS, token };
    this.storage?.setItem(SETTINGS_KEY, JSON.stringify(this.settings));
    this.connection.setAddress(this.settings.address, token);
  }

  // --- actions ------------------------------------------------------------------------

  /** A new image from the prompt, at the active document's size (or 1024 square). @param {Options} options */
  async generate(options) {
    const size = await this.onHost(() => this.host.activeDocumentSize());
    const params = {
      ...paramsFor("generate", options),
      width: generateSize(size ? size.width : 1024),
      height: generateSize(size ? size.height : 1024),
    };
    return this.submit({ op: "generate", prompt: options.prompt || "", params, capture: size, inputs: [] });
  }

  /** The active document's composite as layers. @param {Options} [options] */
  async decomposeDocument(options = {}) {
    const { capture, image } = await this.onHost(() => this.host.captureDocument());
    const params = paramsFor("decompose", options);
    return this.submit({ op: "decompose", prompt: options.prompt || "", params, capture, inputs: [{ name: "image", ...image }] });
  }

  /** The selected layer redone from the prompt, within the selection if there is one. @param {Options} options */
  async regenerateSelectedLayer(options) {
    const { capture, layer, document, mask } = await this.onHost(() => this.host.captureSelectedLayer({ withDocument: true, withMask: true }));
    const inputs = [{ name: "layer", ...layer }, { name: "document", ...document }];
    if (mask) inputs.push({ name: "mask", ...mask });
    return this.submit({ op: "regenerate", prompt: options.prompt || "", params: paramsFor("regenerate", options), capture, inputs });
  }

  /** The selected layer as several layers at its place. @param {Options} [options] */
  async splitSelectedLayer(options = {}) {
    const { capture, layer } = await this.onHost(() => this.host.captureSelectedLayer({ withDocument: false, withMask: false }));
    return this.submit({ op: "split", prompt: "", params: paramsFor("split", options), capture, inputs: [{ name: "layer", ...layer }] });
  }

  /** Cancel one job, or every job still waiting on the server. @param {string} [jobId] */
  cancel(jobId) {
    const targets = jobId ? [this.jobs.get(jobId)] : [...this.jobs.values()];
    for (const job of targets) {
      if (!job || !awaitsServer(job)) continue;
      job.cancelRequested = true;
      job.stage = "cancelling";
      // Disconnected: resumeJobs() sends it on reconnect.
      this.connection.send([jobMessage("cancel", job.id)]);
    }
    this.changed();
  }

  /** Insert a job whose document was closed into a new document of the job's size. @param {string} jobId */
  async insertIntoNewDocument(jobId) {
    const job = this.jobs.get(jobId);
    if (!job || job.status !== "orphaned") throw new Error(`job ${jobId} has no result waiting for a document`);
    await this.insert(job, true).catch((error) => this.hostFailed(job, error));
  }

  /** Forget a finished job (e.g. an orphaned result the user does not want). @param {string} jobId */
  dismiss(jobId) {
    this.jobs.delete(jobId);
    this.changed();
  }

  // --- jobs over the wire ---------------------------------------------------------------

  /**
   * @param {{op: string, prompt: string, params: Record<string, any>, capture: any,
   *   inputs: import("./protocol").InputImage[]}} request
   */
  submit({ op, prompt, params, capture, inputs }) {
    const job = newJob({ id: newJobId(), op, prompt, capture });
    this.jobs.set(job.id, job);
    if (!this.connection.send(submitFrames(job.id, op, params, inputs))) {
      fail(job, "not_connected", this.connection.detail || "Not connected to the LayerBridge server");
    }
    this.changed();
    return job;
  }

  /** After a (re)connect: ask again for what jobs still owe us (fetch), or cancel them. */
  resumeJobs() {
    for (const job of this.jobs.values()) {
      if (awaitsServer(job)) this.connection.send([jobMessage(job.cancelRequested ? "cancel" : "fetch", job.id)]);
    }
    this.changed();
  }

  /** @param {Record<string, any>} message */
  onMessage(message) {
    const job = typeof message.job === "string" ? this.jobs.get(message.job) : undefined;
    if (!job) {
      if (message.type === "error") this.notice = message.message;
      this.changed();
      return;
    }
    const finished = applyMessage(job, message);
    this.changed();
    if (finished) this.insert(job, false).catch((error) => this.hostFailed(job, error));
  }

  /** @param {Job} job @param {boolean} intoNewDocument */
  async insert(job, intoNewDocument) {
    job.status = "inserting";
    this.changed();
    const layers = insertionOrder(job.layers, job.count || 0);
    for (const layer of layers) {
      if (await digestHex(layer.data) !== layer.sha256) {
        fail(job, "damaged", `layer ${layer.index} arrived damaged (checksum differs); run the job again`);
        this.changed();
        return;
      }
    }
    const result = { op: job.op, capture: job.capture, groupName: groupName(job), layers, historyName: historyName(job) };
    const placed = await this.onHost(() => {
      if (intoNewDocument || !job.capture) {
        return this.host.insertIntoNewDocument({ ...result, width: job.width, height: job.height, title: groupName(job) });
      }
      return job.op === "regenerate" ? this.host.replaceLayer(result) : this.host.insertLayers(result);
    });
    if (placed) {
      Object.assign(job, { status: "inserted", stage: "inserted", layers: [] }); // the pixels live in Photoshop now
    } else {
      orphan(job, "the document was closed"); // placed nowhere: keep the result and offer it
    }
    this.changed();
  }

  /** Photoshop refused the change (rolled back): the result stays on offer. @param {Job} job @param {any} error */
  hostFailed(job, error) {
    orphan(job, `Photoshop refused the change (${error && error.message || error})`);
    this.changed();
  }

  /** Run host work one call at a time. @template T @param {() => Promise<T> | T} work @returns {Promise<T>} */
  onHost(work) {
    const run = this.hostQueue.then(work);
    this.hostQueue = run.catch(() => {});
    return run;
  }

  /** Jobs the panel still tracks, newest last. */
  activeJobs() {
    return [...this.jobs.values()].filter(isActive);
  }
}

/** The name of the action in Photoshop's history panel. @param {Job} job */
function historyName(job) {
  const names = { generate: "Generate layers", decompose: "Decompose into layers", regenerate: "Regenerate layer", split: "Split layer" };
  return `LayerBridge: ${names[/** @type {keyof typeof names} */ (job.op)] || job.op}`;
}

module.exports = { Controller, DEFAULT_ADDRESS, SETTINGS_KEY };
