"use strict";
/**
 * Layer placement and pixel-format maths, host-free.
 *
 * Photoshop hands out pixels as (left, top, right, bottom) bounds plus 3 or 4 chunky
 * components; the protocol speaks (x, y, width, height) and RGBA8 only.
 */

/** @typedef {{left: number, top: number, right: number, bottom: number}} Bounds */
/** @typedef {{x: number, y: number, width: number, height: number}} Rect */

/** @param {Bounds} bounds @returns {Rect} */
function boundsToRect(bounds) {
  return { x: bounds.left, y: bounds.top, width: bounds.right - bounds.left, height: bounds.bottom - bounds.top };
}

/** @param {Rect} rect @returns {Bounds} */
function rectToBounds(rect) {
  return { left: rect.x, top: rect.y, right: rect.x + rect.width, bottom: rect.y + rect.height };
}

/**
 * Chunky 8-bit pixels with 1, 3 or 4 components as RGBA8 (the protocol's only format).
 * Three components (a background layer, a flat composite) get alpha 255; one component
 * (a selection) becomes white with that value as alpha, which is what a `mask` input reads.
 * @param {Uint8Array} data @param {number} components @returns {Uint8Array}
 */
function toRGBA8(data, components) {
  if (components === 4) return data;
  if (components !== 3 && components !== 1) throw new Error(`cannot convert ${components}-component pixels to RGBA`);
  const pixels = data.length / components;
  const out = new Uint8Array(pixels * 4);
  for (let i = 0, j = 0; i < pixels; i++, j += components) {
    const o = i * 4;
    if (components === 3) {
      out[o] = data[j]; out[o + 1] = data[j + 1]; out[o + 2] = data[j + 2]; out[o + 3] = 255;
    } else {
      out[o] = 255; out[o + 1] = 255; out[o + 2] = 255; out[o + 3] = data[j];
    }
  }
  return out;
}

/** Photoshop's 16-bit range is 0..32768 (imaging API, "componentSize"), not 0..65535. */
const MAX_16BIT = 32768;

/**
 * RGBA8 as the component size of the target document: 16-bit documents take Uint16
 * data in Photoshop's 0..32768 range (same profile, so a plain rescale).
 * @param {Uint8Array} rgba8 @param {8 | 16} bits @returns {Uint8Array | Uint16Array}
 */
function forDepth(rgba8, bits) {
  if (bits === 8) return rgba8;
  const out = new Uint16Array(rgba8.length);
  for (let i = 0; i < rgba8.length; i++) out[i] = Math.round((rgba8[i] * MAX_16BIT) / 255);
  return out;
}

/**
 * The largest size of the same shape within `maxPixels`.
 * @param {number} width @param {number} height @param {number} maxPixels
 */
function reducedSize(width, height, maxPixels) {
  const factor = Math.min(1, Math.sqrt(maxPixels / (width * height)));
  let w = Math.max(1, Math.floor(width * factor)), h = Math.max(1, Math.floor(height * factor));
  while (w * h > maxPixels) { w -= 1; h = Math.max(1, Math.floor((w * height) / width)); }
  return { width: w, height: h };
}

/**
 * A layer of a job that worked reduced, back at the document's scale: its place and size
 * multiplied by `scale`, its pixels resampled bilinearly over premultiplied colour (so
 * transparent pixels do not darken the edges). `scale` 1 returns the layer as it is.
 * @template {{x: number, y: number, width: number, height: number, data: Uint8Array}} L
 * @param {L} layer @param {number} scale @returns {L}
 */
function scaleLayer(layer, scale) {
  if (scale === 1) return layer;
  const x = Math.floor(layer.x * scale), y = Math.floor(layer.y * scale);
  const width = Math.max(1, Math.ceil((layer.x + layer.width) * scale) - x);
  const height = Math.max(1, Math.ceil((layer.y + layer.height) * scale) - y);
  const src = layer.data, sw = layer.width, sh = layer.height;
  const out = new Uint8Array(width * height * 4);
  for (let ty = 0; ty < height; ty++) {
    const sy = Math.min(sh - 1, Math.max(0, (y + ty + 0.5) / scale - layer.y - 0.5));
    const y0 = Math.floor(sy), y1 = Math.min(sh - 1, y0 + 1), fy = sy - y0;
    for (let tx = 0; tx < width; tx++) {
      const sx = Math.min(sw - 1, Math.max(0, (x + tx + 0.5) / scale - layer.x - 0.5));
      const x0 = Math.floor(sx), x1 = Math.min(sw - 1, x0 + 1), fx = sx - x0;
      const taps = [[y0, x0, (1 - fx) * (1 - fy)], [y0, x1, fx * (1 - fy)], [y1, x0, (1 - fx) * fy], [y1, x1, fx * fy]];
      let r = 0, g = 0, b = 0, a = 0;
      for (const [row, col, weight] of taps) {
        const o = (row * sw + col) * 4, alpha = src[o + 3] * weight;
        r += src[o] * alpha; g += src[o + 1] * alpha; b += src[o + 2] * alpha; a += alpha;
      }
      if (a > 0) out.set([Math.round(r / a), Math.round(g / a), Math.round(b / a), Math.round(a)], (ty * width + tx) * 4);
    }
  }
  return { ...layer, x, y, width, height, data: out };
}

/** Longest prompt text kept in a group name; Photoshop shows names in one narrow line. */
const MAX_GROUP_NAME = 60;

/**
 * The name of the layer group a job's layers go into.
 * @param {{op: string, prompt?: string, sourceLayerName?: string}} job
 */
function groupName(job) {
  const prompt = (job.prompt || "").trim().replace(/\s+/g, " ");
  if (prompt) return prompt.length > MAX_GROUP_NAME ? `${prompt.slice(0, MAX_GROUP_NAME - 1)}…` : prompt;
  if (job.op === "split" && job.sourceLayerName) return `${job.sourceLayerName} (split)`;
  return "Decomposed";
}

/** @param {{name?: string, index: number}} layer */
function layerName(layer) {
  return layer.name && layer.name.trim() ? layer.name : `Layer ${layer.index + 1}`;
}

/**
 * The layers of a finished job in insertion order (index 0, the bottom, first), each
 * with the name and document offset to give it. Throws if one is missing.
 * @template {{index: number, name?: string, x: number, y: number, width: number, height: number, data: Uint8Array}} L
 * @param {L[]} layers by index @param {number} count
 */
function insertionOrder(layers, count) {
  const ordered = [];
  for (let index = 0; index < count; index++) {
    const layer = layers[index];
    if (!layer) throw new Error(`layer ${index} of ${count} never arrived`);
    ordered.push({ ...layer, name: layerName(layer) });
  }
  return ordered;
}

/** Generated image size for a document, within the protocol's 64..16384 range. */
/** @param {number} size */
function generateSize(size) {
  return Math.min(16384, Math.max(64, Math.round(size)));
}

module.exports = {
  reducedSize, scaleLayer, boundsToRect, rectToBounds, toRGBA8, forDepth, MAX_16BIT, groupName, layerName, insertionOrder, generateSize };
