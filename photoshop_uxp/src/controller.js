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
const { groupName, insertionOrder, generateSize, scaleLayer, reducedSize } = require("./placement");

const DEFAULT_ADDRESS = "ws://127.0.0.1:7861";
const SETTINGS_KEY = "layerbridge.settings";
/** The last prompt and settings used, restored when the panel opens. */
const LAST_KEY = "layerbridge.last";
/** Finished jobs whose layers the panel keeps for "insert again"; older ones keep only their line. */
const HISTORY_SIZE = 8;
const MAX_SEED = 2 ** 31 - 1;

/** A document larger than the server takes; `offer` is how to work at a size it takes. */
class TooLarge extends Error {
  /** @param {string} message @param {{op: string, options: any, scale: number, width: number, height: number}} offer */
  constructor(message, offer) {
    super(message);
    this.offer = offer;
  }
}

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
    /** @type {Options & {seedPinned?: boolean}} */
    this.last = this.load(LAST_KEY);
    /** @type {{op: string, options: any, scale: number, width: number, height: number} | null} */
    this.reducedOffer = null;
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
    return this.load(SETTINGS_KEY);
  }

  /** @param {string} key */
  load(key) {
    try {
      const value = JSON.parse(this.storage?.getItem(key) || "{}");
      return value && typeof value === "object" ? value : {};
    } catch {
      return {};
    }
  }

  /** Remember what was asked, so the panel opens with it next time. @param {Options} options */
  remember(options) {
    this.last = { ...this.last, ...options, seed: this.last.seedPinned ? this.last.seed : null };
    this.storage?.setItem(LAST_KEY, JSON.stringify(this.last));
  }

  /** Keep using `seed` (a job's) for the next jobs, or pass null to go back to new seeds. @param {number | null} seed */
  pinSeed(seed) {
    this.last = { ...this.last, seed, seedPinned: seed !== null };
    this.storage?.setItem(LAST_KEY, JSON.stringify(this.last));
    this.changed();
  }

  /** The seed a job is sent with: the one asked for or pinned, else a new one the panel shows. @param {Options} options */
  seedFor(options) {
    if (typeof options.seed === "number") return options.seed;
    if (this.last.seedPinned && typeof this.last.seed === "number") return this.last.seed;
    return Math.floor(Math.random() * MAX_SEED);
  }

  /**
   * Refuse a document over the server's max_pixels before anything is read from it, with an
   * offer to work at the largest size the server takes and scale the layers back.
   * @param {string} op @param {any} options @param {{width: number, height: number} | null} size @param {number} scale
   */
  checkSize(op, options, size, scale) {
    const maxPixels = this.connection.welcome?.capabilities?.max_pixels;
    if (!size || !maxPixels || scale !== 1 || size.width * size.height <= maxPixels) return;
    const reduced = reducedSize(size.width, size.height, maxPixels);
    const offer = { op, options, scale: size.width / reduced.width, ...reduced };
    this.reducedOffer = offer;
    this.changed();
    throw new TooLarge(
      `The document is ${size.width}×${size.height} = ${size.width * size.height} pixels; the server takes at most ${maxPixels}. ` +
        `Work at ${reduced.width}×${reduced.height} and scale the layers back, or start the server with a larger --max-pixels.`,
      offer,
    );
  }

  /** Accept the offer: run the refused action again at the reduced size. */
  async workReduced() {
    const offer = this.reducedOffer;
    if (!offer) throw new Error("nothing to reduce");
    this.reducedOffer = null;
    if (offer.op === "decompose") return this.decomposeDocument(offer.options, offer.scale);
    return this.splitSelectedLayer(offer.options, offer.scale);
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

  /**
   * The active document's composite as layers; `scale` > 1 sends it that much smaller and
   * scales the layers back (see checkSize).
   * @param {Options} [options] @param {number} [scale]
   */
  async decomposeDocument(options = {}, scale = 1) {
    this.checkSize("decompose", options, await this.onHost(() => this.host.activeDocumentSize()), scale);
    const { capture, image } = await this.onHost(() => this.host.captureDocument({ scale }));
    const params = paramsFor("decompose", options);
    return this.submit({ op: "decompose", prompt: options.prompt || "", params, capture, inputs: [{ name: "image", ...image }], scale });
  }

  /** The selected layer redone from the prompt, within the selection if there is one. @param {Options} options */
  async regenerateSelectedLayer(options) {
    const size = await this.onHost(() => this.host.activeDocumentSize());
    const maxPixels = this.connection.welcome?.capabilities?.max_pixels;
    if (size && maxPixels && size.width * size.height > maxPixels) {
      throw new Error(`The document is ${size.width}×${size.height} pixels; the server takes at most ${maxPixels}: regenerate in a smaller copy (Image > Image Size), or start the server with a larger --max-pixels.`);
    }
    const { capture, layer, document, mask } = await this.onHost(() => this.host.captureSelectedLayer({ withDocument: true, withMask: true }));
    const inputs = [{ name: "layer", ...layer }, { name: "document", ...document }];
    if (mask) inputs.push({ name: "mask", ...mask });
    return this.submit({ op: "regenerate", prompt: options.prompt || "", params: paramsFor("regenerate", options), capture, inputs });
  }

  /** The selected layer as several layers at its place. @param {Options} [options] @param {number} [scale] */
  async splitSelectedLayer(options = {}, scale = 1) {
    this.checkSize("split", options, await this.onHost(() => this.host.activeDocumentSize()), scale);
    const { capture, layer } = await this.onHost(() => this.host.captureSelectedLayer({ withDocument: false, withMask: false, scale }));
    return this.submit({ op: "split", prompt: "", params: paramsFor("split", options), capture, inputs: [{ name: "layer", ...layer }], scale });
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

  /** Insert a finished job's layers once more, into the active document (or a new one). @param {string} jobId */
  async insertAgain(jobId) {
    const job = this.jobs.get(jobId);
    if (!job || job.status !== "inserted" || job.layers.length === 0) throw new Error("that result is no longer kept; run the job again");
    const layers = insertionOrder(job.layers, job.count || 0).map((layer) => scaleLayer(layer, job.scale));
    const size = await this.onHost(() => this.host.activeDocumentSize());
    const result = { op: "generate", capture: size, groupName: groupName(job), layers, historyName: "LayerBridge: Insert again" };
    const placed = await this.onHost(() => (size
      ? this.host.insertLayers(result)
      : this.host.insertIntoNewDocument({ ...result, width: (job.width || 0) * job.scale, height: (job.height || 0) * job.scale, title: groupName(job) })));
    if (!placed) throw new Error("the document was closed");
  }

  /** The session's jobs, newest first: what ran, its seed, and whether it can be inserted again. */
  history() {
    return [...this.jobs.values()].filter((job) => !isActive(job)).reverse();
  }

  /** Forget a finished job (e.g. an orphaned result the user does not want). @param {string} jobId */
  dismiss(jobId) {
    this.jobs.delete(jobId);
    this.changed();
  }

  // --- jobs over the wire ---------------------------------------------------------------

  /**
   * @param {{op: string, prompt: string, params: Record<string, any>, capture: any,
   *   inputs: import("./protocol").InputImage[], scale?: number}} request
   */
  submit({ op, prompt, params, capture, inputs, scale = 1 }) {
    this.notice = ""; // a new job starts clean: nothing said about an earlier one carries over
    this.reducedOffer = null;
    const { seed: asked, ...rest } = params;
    const seed = this.seedFor({ seed: asked });
    params = { ...rest, seed };
    this.remember(op === "split" ? { layers: rest.layers ?? "auto" } : { prompt, layers: rest.layers ?? "auto" });
    const job = newJob({ id: newJobId(), op, prompt, capture, seed, scale });
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
      // The input frames of a submit the server refused come back as job-less
      // unexpected_binary: that job has its own error already, so say nothing more.
      if (message.type === "error" && message.code !== "unexpected_binary") this.notice = message.message;
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
    const received = insertionOrder(job.layers, job.count || 0);
    for (const layer of received) {
      if (await digestHex(layer.data) !== layer.sha256) {
        fail(job, "damaged", `layer ${layer.index} arrived damaged (checksum differs); run the job again`);
        this.changed();
        return;
      }
    }
    // A job that worked reduced: its layers go back at the document's scale.
    const layers = received.map((layer) => scaleLayer(layer, job.scale));
    const result = { op: job.op, capture: job.capture, groupName: groupName(job), layers, historyName: historyName(job) };
    const placed = await this.onHost(() => {
      if (intoNewDocument || !job.capture) {
        return this.host.insertIntoNewDocument({ ...result, width: (job.width || 0) * job.scale, height: (job.height || 0) * job.scale, title: groupName(job) });
      }
      return job.op === "regenerate" ? this.host.replaceLayer(result) : this.host.insertLayers(result);
    });
    if (placed) {
      Object.assign(job, { status: "inserted", stage: "inserted" });
      this.forgetOldPixels();
    } else {
      orphan(job, "the document was closed"); // placed nowhere: keep the result and offer it
    }
    this.changed();
  }

  /** Keep the layers of the newest HISTORY_SIZE inserted jobs only: the rest live in Photoshop. */
  forgetOldPixels() {
    const inserted = [...this.jobs.values()].filter((job) => job.status === "inserted" && job.layers.length > 0);
    for (const job of inserted.slice(0, -HISTORY_SIZE)) job.layers = [];
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

module.exports = { Controller, TooLarge, DEFAULT_ADDRESS, SETTINGS_KEY, LAST_KEY, HISTORY_SIZE };
