"use strict";
/**
 * Test plumbing: the real LayerBridge server as a subprocess, the panel's code loaded over
 * the fake Photoshop, and a WebSocket stand-in that records every frame the panel receives.
 */

const { spawn } = require("node:child_process");
const path = require("node:path");
const Module = require("node:module");
const WebSocket = require("ws");
const { FakePhotoshop } = require("./fake_photoshop");

const REPO_ROOT = path.resolve(__dirname, "..", "..");
const LAYERBRIDGE_BIN = process.env.LAYERBRIDGE_BIN || path.join(REPO_ROOT, ".venv", "bin", "layerbridge");

/**
 * Start `layerbridge serve --engine <engine>` and resolve once it prints its address.
 * Resolves to null (with the reason) when the server says it has no such engine.
 * @param {string} engine @param {string[]} [extra]
 */
function startServer(engine, extra = ["--port", "0"]) {
  return new Promise((resolve, reject) => {
    const child = spawn(LAYERBRIDGE_BIN, ["serve", "--engine", engine, ...extra], { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "", stderr = "";
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`server did not start in 90 s:\n${stderr}`)); }, 90_000);
    child.stdout.on("data", (chunk) => {
      stdout += chunk;
      const match = /ws:\/\/127\.0\.0\.1:(\d+)/.exec(stdout);
      if (match) {
        clearTimeout(timer);
        resolve({ url: match[0], port: Number(match[1]), child, stop: () => stopServer(child) });
      }
    });
    child.stderr.on("data", (chunk) => { stderr += chunk; });
    child.on("error", (error) => { clearTimeout(timer); reject(new Error(`cannot run ${LAYERBRIDGE_BIN} (set LAYERBRIDGE_BIN): ${error.message}`)); });
    child.on("exit", (code) => {
      clearTimeout(timer);
      const unknown = /invalid choice: '[^']*'|unknown engine|No module named 'layerbridge\.engines\.[a-z_]+'/.exec(stderr);
      if (unknown) resolve({ unavailable: `the server has no ${engine} engine yet (${unknown[0]})` });
      else reject(new Error(`server exited with ${code} before it was ready:\n${stderr}`));
    });
  });
}

/** @param {import("node:child_process").ChildProcess} child */
function stopServer(child) {
  if (child.exitCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    child.once("exit", resolve);
    child.kill("SIGTERM");
  });
}

/**
 * Load src/photoshop_host.js with `require("photoshop")` and `require("uxp")` answered by
 * a fresh fake, as a UXP host would answer them.
 */
function loadHostOverFake() {
  const fake = new FakePhotoshop();
  const originalLoad = /** @type {any} */ (Module)._load;
  /** @type {any} */ (Module)._load = function load(/** @type {string} */ request, /** @type {any[]} */ ...rest) {
    if (request === "photoshop") return fake.module;
    if (request === "uxp") return fake.uxp;
    return originalLoad.call(this, request, ...rest);
  };
  const hostPath = require.resolve("../src/photoshop_host.js");
  delete require.cache[hostPath];
  try {
    return { fake, host: require(hostPath) };
  } finally {
    /** @type {any} */ (Module)._load = originalLoad;
  }
}

/**
 * A WebSocket class (UXP's browser API, over the npm `ws` package) whose instances record
 * every frame they receive (`log.frames`) and send (`log.sent`), and can be killed mid-job by a test.
 */
function recordingWebSocket() {
  /** @type {{frames: (string | Buffer)[], sent: (string | Uint8Array)[], sockets: any[], onFrame: ((frame: string | Buffer, socket: any) => void) | null}} */
  const log = { frames: [], sent: [], sockets: [], onFrame: null };
  class RecordingWebSocket extends WebSocket {
    /** @param {string} url */
    constructor(url) {
      super(url);
      this.dead = false;
      log.sockets.push(this);
      this.on("message", (data, isBinary) => {
        const frame = isBinary ? Buffer.from(/** @type {Buffer} */ (data)) : data.toString();
        log.frames.push(frame);
        log.onFrame?.(frame, this);
      });
    }

    /** Cut the connection as a network failure would: frames already read are lost too. */
    kill() {
      this.dead = true;
      this.terminate();
    }

    /** @param {string | symbol} event @param {any[]} args */
    emit(event, ...args) {
      if (this.dead && event === "message") return false;
      return super.emit(event, ...args);
    }

    /** @param {string | Uint8Array} frame */
    send(frame) {
      log.sent.push(frame);
      super.send(frame);
    }
  }
  return { WebSocketClass: RecordingWebSocket, log };
}

/**
 * The layers of one job, read straight from the recorded frames (independently of the
 * panel's protocol code): header and the binary frame after it.
 * @param {(string | Buffer)[]} frames @param {string} job
 */
function layersFromFrames(frames, job) {
  /** @type {Map<number, any>} */
  const layers = new Map();
  for (let i = 0; i < frames.length; i++) {
    if (typeof frames[i] !== "string") continue;
    const message = JSON.parse(/** @type {string} */ (frames[i]));
    if (message.type === "layer" && message.job === job) layers.set(message.index, { ...message, data: frames[i + 1] });
  }
  return [...layers.keys()].sort((a, b) => a - b).map((index) => layers.get(index));
}

/** Wait until `predicate()` holds, polling. @param {() => any} predicate @param {number} [timeoutMs] @param {string} [what] */
async function waitFor(predicate, timeoutMs = 60_000, what = "condition") {
  const start = Date.now();
  for (;;) {
    const value = predicate();
    if (value) return value;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}

/** A deterministic test picture: soft background, a disc, a rectangle. @param {number} width @param {number} height */
function testPicture(width, height) {
  const data = new Uint8Array(width * height * 4);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 4;
      let rgb = [200, 220 - Math.floor((y / height) * 40), 240];
      const dx = x - width * 0.35, dy = y - height * 0.5;
      if (dx * dx + dy * dy < (width * 0.2) ** 2) rgb = [220, 40, 40];
      if (x > width * 0.6 && x < width * 0.9 && y > height * 0.2 && y < height * 0.6) rgb = [30, 60, 200];
      data.set([...rgb, 255], o);
    }
  }
  return data;
}

module.exports = { REPO_ROOT, LAYERBRIDGE_BIN, startServer, loadHostOverFake, recordingWebSocket, layersFromFrames, waitFor, testPicture };
