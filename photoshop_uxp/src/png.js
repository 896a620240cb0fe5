"use strict";
/**
 * Pictures for the panel's own UI (the preview, layer thumbnails): UXP's DOM has no canvas
 * to put raw pixels into, but an <img> shows a PNG data URL. This writes small PNGs with
 * stored (uncompressed) deflate blocks: no zlib needed, and thumbnails stay small anyway.
 */

/** @type {Uint32Array | null} */
let crcTable = null;

/** @param {Uint8Array} bytes */
function crc32(bytes) {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (const byte of bytes) crc = crcTable[(crc ^ byte) & 0xff] ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** @param {Uint8Array} bytes */
function adler32(bytes) {
  let a = 1, b = 0;
  for (const byte of bytes) {
    a = (a + byte) % 65521;
    b = (b + a) % 65521;
  }
  return ((b << 16) | a) >>> 0;
}

/** @param {number} value */
function u32(value) {
  return [(value >>> 24) & 255, (value >>> 16) & 255, (value >>> 8) & 255, value & 255];
}

/** @param {string} type @param {Uint8Array} data */
function chunk(type, data) {
  const typed = new Uint8Array(4 + data.length);
  typed.set([...type].map((c) => c.charCodeAt(0)));
  typed.set(data, 4);
  return [...u32(data.length), ...typed, ...u32(crc32(typed))];
}

/** A zlib stream of stored blocks. @param {Uint8Array} raw */
function storedZlib(raw) {
  const out = [0x78, 0x01];
  for (let offset = 0; offset < raw.length || offset === 0; offset += 65535) {
    const block = raw.subarray(offset, offset + 65535);
    const last = offset + 65535 >= raw.length ? 1 : 0;
    out.push(last, block.length & 255, block.length >> 8, ~block.length & 255, (~block.length >> 8) & 255);
    for (const byte of block) out.push(byte);
    if (raw.length === 0) break;
  }
  out.push(...u32(adler32(raw)));
  return Uint8Array.from(out);
}

/**
 * An RGBA8 PNG file.
 * @param {Uint8Array} rgba @param {number} width @param {number} height @returns {Uint8Array}
 */
function encodePng(rgba, width, height) {
  const raw = new Uint8Array((width * 4 + 1) * height);
  for (let y = 0; y < height; y++) {
    raw[y * (width * 4 + 1)] = 0; // filter: none
    raw.set(rgba.subarray(y * width * 4, (y + 1) * width * 4), y * (width * 4 + 1) + 1);
  }
  const header = Uint8Array.from([...u32(width), ...u32(height), 8, 6, 0, 0, 0]);
  return Uint8Array.from([
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a,
    ...chunk("IHDR", header), ...chunk("IDAT", storedZlib(raw)), ...chunk("IEND", new Uint8Array(0)),
  ]);
}

/**
 * RGBA8 scaled down (box average over premultiplied colour) to fit `size` pixels square.
 * @param {Uint8Array} rgba @param {number} width @param {number} height @param {number} size
 * @returns {{data: Uint8Array, width: number, height: number}}
 */
function thumbnail(rgba, width, height, size) {
  const scale = Math.min(1, size / Math.max(width, height));
  const w = Math.max(1, Math.round(width * scale)), h = Math.max(1, Math.round(height * scale));
  const out = new Uint8Array(w * h * 4);
  for (let ty = 0; ty < h; ty++) {
    const y0 = Math.floor((ty * height) / h), y1 = Math.max(y0 + 1, Math.floor(((ty + 1) * height) / h));
    for (let tx = 0; tx < w; tx++) {
      const x0 = Math.floor((tx * width) / w), x1 = Math.max(x0 + 1, Math.floor(((tx + 1) * width) / w));
      let r = 0, g = 0, b = 0, a = 0, n = 0;
      for (let y = y0; y < y1; y++) {
        for (let x = x0; x < x1; x++) {
          const o = (y * width + x) * 4, alpha = rgba[o + 3];
          r += rgba[o] * alpha; g += rgba[o + 1] * alpha; b += rgba[o + 2] * alpha; a += alpha; n++;
        }
      }
      const o = (ty * w + tx) * 4;
      if (a > 0) out.set([Math.round(r / a), Math.round(g / a), Math.round(b / a), Math.round(a / n)], o);
    }
  }
  return { data: out, width: w, height: h };
}

const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** @param {Uint8Array} bytes */
function base64(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const n = (bytes[i] << 16) | ((bytes[i + 1] || 0) << 8) | (bytes[i + 2] || 0);
    out += BASE64[(n >> 18) & 63] + BASE64[(n >> 12) & 63];
    out += i + 1 < bytes.length ? BASE64[(n >> 6) & 63] : "=";
    out += i + 2 < bytes.length ? BASE64[n & 63] : "=";
  }
  return out;
}

/**
 * A data URL of RGBA8 pixels scaled to fit `size`, for an <img>.
 * @param {Uint8Array} rgba @param {number} width @param {number} height @param {number} [size]
 */
function pictureUrl(rgba, width, height, size = 160) {
  const small = thumbnail(rgba, width, height, size);
  return `data:image/png;base64,${base64(encodePng(small.data, small.width, small.height))}`;
}

module.exports = { encodePng, thumbnail, pictureUrl, crc32 };
