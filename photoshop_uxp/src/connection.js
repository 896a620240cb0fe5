"use strict";
/**
 * One websocket to the LayerBridge server that keeps itself up: hello on open, a visible
 * state, and reconnection with backoff. Host-free: the WebSocket class and the timers are
 * passed in (UXP's global WebSocket in the panel, the npm `ws` package in tests).
 */

const { ClientConnection, ProtocolError, PROTOCOL_VERSION, helloMessage } = require("./protocol");

const RECONNECT_DELAYS_MS = [250, 500, 1000, 2000, 4000];
/** Failed attempts in a row after which a lost server counts as "not running". */
const ATTEMPTS_BEFORE_DOWN = 3;
const CONNECT_TIMEOUT_MS = 5000;
const DEFAULT_PORT = 7861;

/**
 * The command that starts a server this address reaches: `layerbridge serve`, with the
 * port when it is not the default one.
 * @param {string} url
 */
function startCommand(url) {
  const port = /^wss?:\/\/[^/:]+:(\d+)/.exec(url)?.[1];
  return port && Number(port) !== DEFAULT_PORT ? `layerbridge serve --port ${port}` : "layerbridge serve";
}

/**
 * States: connecting, connected, reconnecting, down (no server answers), mismatch
 * (protocol versions differ; retrying cannot help), unauthorized, stopped.
 * @typedef {"connecting" | "connected" | "reconnecting" | "down" | "mismatch" | "unauthorized" | "stopped"} State
 */

class Connection {
  /**
   * @param {{url: string, token?: string, client: string, WebSocketClass: any,
   *   timers?: {setTimeout: Function, clearTimeout: Function},
   *   onState?: (state: State, detail: string) => void,
   *   onWelcome?: (welcome: Record<string, any>) => void,
   *   onMessage?: (message: Record<string, any>) => void}} options
   */
  constructor(options) {
    this.options = options;
    this.timers = options.timers || globalThis;
    /** @type {State} */
    this.state = "stopped";
    this.detail = "";
    /** @type {Record<string, any> | null} */
    this.welcome = null;
    /** The server's key to this panel's jobs, sent back on every reconnect. @type {string | null} */
    this.secret = null;
    this.socket = null;
    this.failures = 0;
    this.everConnected = false;
    this.retryTimer = null;
  }

  get url() {
    return this.options.url;
  }

  start() {
    this.stop();
    this.failures = 0;
    this.everConnected = false;
    this.setState("connecting", `Connecting to ${this.url}`);
    this.open();
  }

  /** Close for good (until start()); used when the address changes or the panel closes. */
  stop() {
    this.timers.clearTimeout(this.retryTimer);
    const socket = this.socket;
    this.socket = null;
    this.welcome = null;
    if (socket) socket.close();
    this.setState("stopped", "");
  }

  /** @param {string} url @param {string} [token] */
  setAddress(url, token) {
    Object.assign(this.options, { url, token });
    this.start();
  }

  /** Send frames if the server greeted us. @param {(string | Uint8Array)[]} frames @returns {boolean} */
  send(frames) {
    if (this.state !== "connected" || !this.socket) return false;
    for (const frame of frames) this.socket.send(frame);
    return true;
  }

  open() {
    let socket;
    try {
      socket = new this.options.WebSocketClass(this.url);
    } catch (error) {
      // A malformed address, or one the manifest does not declare: retrying cannot help.
      this.setState("down", `Cannot connect to ${this.url}: ${error}. Type an address such as ws://127.0.0.1:7861 or wss://layers.example.com:7861.`);
      return;
    }
    this.socket = socket;
    socket.binaryType = "arraybuffer";
    const reader = new ClientConnection();
    const timeout = this.timers.setTimeout(() => socket.close(), CONNECT_TIMEOUT_MS);
    socket.onopen = () => {
      this.timers.clearTimeout(timeout);
      socket.send(JSON.stringify(helloMessage(this.options.client, this.options.token, this.secret)));
    };
    socket.onmessage = (/** @type {{data: any}} */ event) => {
      if (socket !== this.socket) return;
      try {
        for (const message of reader.receive(event.data)) this.dispatch(message);
      } catch (error) {
        // The stream is out of step (a lost or garbled frame): start over on a new socket.
        if (!(error instanceof ProtocolError)) throw error;
        this.detail = `Server sent something unexpected (${error.message}); reconnecting`;
        socket.close();
      }
    };
    socket.onerror = () => {}; // onclose follows and decides what to do
    socket.onclose = () => {
      this.timers.clearTimeout(timeout);
      if (socket === this.socket) this.dropped();
    };
  }

  /** @param {Record<string, any>} message */
  dispatch(message) {
    if (this.welcome) {
      this.options.onMessage?.(message);
      return;
    }
    if (message.type === "welcome") {
      if (message.protocol !== PROTOCOL_VERSION) {
        this.refuse("mismatch", `The server speaks protocol ${message.protocol}, this panel ${PROTOCOL_VERSION}: update the panel and the server to the same release.`);
        return;
      }
      this.welcome = message;
      this.secret = message.secret || this.secret;
      this.failures = 0;
      this.everConnected = true;
      this.setState("connected", `Connected to ${message.server} (${message.engine} engine)`);
      this.options.onWelcome?.(message);
    } else if (message.type === "error" && message.code === "protocol_mismatch") {
      this.refuse("mismatch", message.message);
    } else if (message.type === "error" && message.code === "unauthorized") {
      this.refuse("unauthorized", message.message);
    } else {
      this.options.onMessage?.(message);
    }
  }

  /** A state that retrying cannot fix: close and wait for the user. @param {State} state @param {string} detail */
  refuse(state, detail) {
    const socket = this.socket;
    this.socket = null;
    this.welcome = null;
    socket?.close();
    this.setState(state, detail);
  }

  dropped() {
    this.socket = null;
    this.welcome = null;
    this.failures += 1;
    const down = !this.everConnected || this.failures > ATTEMPTS_BEFORE_DOWN;
    if (down) {
      this.setState("down", `Server not running at ${this.url}. Start it with: ${startCommand(this.url)}`);
    } else {
      this.setState("reconnecting", `Connection lost; reconnecting to ${this.url}`);
    }
    const delay = RECONNECT_DELAYS_MS[Math.min(this.failures - 1, RECONNECT_DELAYS_MS.length - 1)];
    this.retryTimer = this.timers.setTimeout(() => this.open(), delay);
  }

  /** @param {State} state @param {string} detail */
  setState(state, detail) {
    this.state = state;
    this.detail = detail;
    this.options.onState?.(state, detail);
  }
}

module.exports = { Connection, startCommand };
