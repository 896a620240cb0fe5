"use strict";
/**
 * LayerBridge protocol v1, client side, sans I/O: frames in, messages out, no sockets.
 *
 * Mirrors `ClientConnection` in server/layerbridge/protocol.py (see shared/PROTOCOL.md).
 * The server sends JSON text frames; a `layer` or `preview` header is followed by exactly
 * one binary frame of RGBA8 pixels, which this class pairs with it as `message.data`.
 */

const PROTOCOL_VERSION = 1;
const BINARY_MESSAGES = ["layer", "preview"];
const MAX_TEXT_BYTES = 64 * 1024;
const JOB_ID = /^[A-Za-z0-9_.:-]{1,128}$/;

/** A frame that breaks the protocol; `code` is one of the spec's stable error codes. */
class ProtocolError extends Error {
  /** @param {string} code @param {string} message */
  constructor(code, message) {
    super(message);
    this.name = "ProtocolError";
    this.code = code;
  }
}

/** @param {string} text @returns {Record<string, any>} */
function decode(text) {
  if (text.length > MAX_TEXT_BYTES) {
    throw new ProtocolError("bad_message", `text message of ${text.length} bytes is over the limit`);
  }
  let message;
  try {
    message = JSON.parse(text);
  } catch (error) {
    throw new ProtocolError("bad_json", `message is not valid JSON (${error})`);
  }
  if (message === null || typeof message !== "object" || Array.isArray(message) || typeof message.type !== "string") {
    throw new ProtocolError("bad_message", 'a message must be a JSON object with a string "type"');
  }
  return message;
}

/** Turns the server's frames into complete messages, pixels attached. */
class ClientConnection {
  constructor() {
    /** @type {Record<string, any> | null} the header whose pixels come next */
    this.header = null;
  }

  /**
   * @param {string | ArrayBuffer | ArrayBufferView} frame one websocket frame
   * @returns {Record<string, any>[]} the messages this frame completes
   */
  receive(frame) {
    if (typeof frame !== "string") return this.receiveBinary(toBytes(frame));
    if (this.header !== null) {
      throw new ProtocolError("missing_binary", `the server sent text after a "${this.header.type}" header instead of its pixels`);
    }
    const message = decode(frame);
    if (BINARY_MESSAGES.includes(message.type)) {
      this.header = message;
      return [];
    }
    return [message];
  }

  /** @param {Uint8Array} data */
  receiveBinary(data) {
    const header = this.header;
    this.header = null;
    if (header === null) throw new ProtocolError("unexpected_binary", "the server sent pixels with no header");
    const expected = header.width * header.height * 4;
    if (data.length !== expected) {
      throw new ProtocolError("wrong_byte_count", `${header.type} frame has ${data.length} bytes, its header says ${expected}`);
    }
    return [{ ...header, data }];
  }
}

/** @param {ArrayBuffer | ArrayBufferView} frame */
function toBytes(frame) {
  if (frame instanceof Uint8Array) return frame;
  if (ArrayBuffer.isView(frame)) return new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
  return new Uint8Array(frame);
}

/**
 * @param {string} client e.g. "photoshop/0.1.0" @param {string} [token]
 * @param {string | null} [secret] the secret of the first welcome: this panel again, with its jobs
 */
function helloMessage(client, token, secret) {
  /** @type {Record<string, any>} */
  const message = { type: "hello", protocol: PROTOCOL_VERSION, client };
  if (token) message.token = token;
  if (secret) message.secret = secret;
  return message;
}

/**
 * @typedef {{name: string, width: number, height: number, x: number, y: number, data: Uint8Array}} InputImage
 * RGBA8 pixels at a document offset.
 */

/**
 * The frames of one `submit`: its JSON, then one binary frame per input, in order.
 * @param {string} job @param {string} op @param {Record<string, any>} params @param {InputImage[]} inputs
 * @returns {(string | Uint8Array)[]}
 */
function submitFrames(job, op, params, inputs = []) {
  if (!JOB_ID.test(job)) throw new Error(`bad job id ${JSON.stringify(job)}`);
  for (const input of inputs) {
    const expected = input.width * input.height * 4;
    if (input.data.length !== expected) throw new Error(`input ${input.name} has ${input.data.length} bytes, not ${expected}`);
  }
  const specs = inputs.map(({ name, width, height, x, y }) => ({ name, width, height, x, y }));
  return [JSON.stringify({ type: "submit", job, op, params, inputs: specs }), ...inputs.map((input) => input.data)];
}

/** @param {"cancel" | "fetch"} type @param {string} job */
function jobMessage(type, job) {
  return JSON.stringify({ type, job });
}

/** A job id the server accepts (1-128 of A-Z a-z 0-9 _ . : -), unique enough to survive reconnects. */
function newJobId() {
  const random = globalThis.crypto?.randomUUID?.();
  if (random) return random;
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

module.exports = {
  PROTOCOL_VERSION,
  ProtocolError,
  ClientConnection,
  decode,
  helloMessage,
  submitFrames,
  jobMessage,
  newJobId,
};
