"use strict";
/**
 * The host adapter: the only file that touches Photoshop (`require("photoshop")`, `require("uxp")`).
 *
 * Reads run inside a read-only modal scope; every change runs inside one
 * `core.executeAsModal` with `hostControl.suspendHistory`, so each action is one history
 * step. Network work never happens in here (a modal scope blocks Photoshop while it lasts).
 */

const { app, core, imaging, action, constants } = require("photoshop");
const uxp = require("uxp");
const { boundsToRect, toRGBA8, forDepth } = require("./placement");

/** Always name the profile: without it a non-sRGB document shifts the colours. */
const SRGB = "sRGB IEC61966-2.1";

/** @typedef {import("photoshop/dom/Document").Document} Document */
/** @typedef {import("photoshop/dom/Layer").Layer} Layer */
/** @typedef {{x: number, y: number, width: number, height: number, data: Uint8Array}} Pixels */
/** @typedef {{index: number, name: string, x: number, y: number, width: number, height: number, data: Uint8Array}} ResultLayer */
/** @typedef {import("./jobs").Capture} Capture */

function clientName() {
  return `photoshop-uxp/${uxp.versions.plugin || "0"}`;
}

/** @param {number} documentId @returns {Document | undefined} */
function findDocument(documentId) {
  return Array.from(app.documents).find((doc) => doc.id === documentId);
}

/** @param {Layer[] | null} layers @param {number} layerId @returns {Layer | undefined} */
function findLayer(layers, layerId) {
  for (const layer of layers || []) {
    if (layer.id === layerId) return layer;
    const inner = findLayer(Array.from(layer.layers || []), layerId);
    if (inner) return inner;
  }
  return undefined;
}

/** @param {Document} doc @returns {Capture} */
function captureOf(doc) {
  depthOf(doc); // refuse a document we could not write back into, before any work
  return { documentId: doc.id, title: doc.title, width: doc.width, height: doc.height };
}

/**
 * The component size to write pixels in. putPixels is given data of the document's own
 * depth; 32-bit documents are linear light, which 8-bit sRGB results do not map onto.
 * @param {Document} doc @returns {8 | 16}
 */
function depthOf(doc) {
  const bits = doc.bitsPerChannel;
  if (bits === constants.BitsPerChannelType.SIXTEEN) return 16;
  if (bits === constants.BitsPerChannelType.EIGHT) return 8;
  throw new Error("LayerBridge works on 8- and 16-bit documents: convert this one with Image > Mode > 16 Bits/Channel.");
}

function requireDocument() {
  if (app.documents.length === 0) throw new Error("Open a document first.");
  return app.activeDocument;
}

function activeDocumentSize() {
  if (app.documents.length === 0) return null;
  return captureOf(app.activeDocument);
}

/**
 * RGBA8 pixels of a layer, or of the document composite when layerId is left out; `scale`
 * > 1 reads them that much smaller (Photoshop resamples), at a place divided by `scale`.
 * @param {Document} doc @param {number} [layerId] @param {number} [scale] @returns {Promise<Pixels>}
 */
async function readPixels(doc, layerId, scale = 1) {
  /** @type {any} */
  const options = { documentID: doc.id, layerID: layerId, colorSpace: "RGB", colorProfile: SRGB, componentSize: 8 };
  if (scale !== 1) options.targetSize = { width: Math.max(1, Math.round(doc.width / scale)), height: Math.max(1, Math.round(doc.height / scale)) };
  const { imageData, sourceBounds } = await imaging.getPixels(options);
  try {
    const data = /** @type {Uint8Array} */ (await imageData.getData({ chunky: true }));
    // getPixels trims to where there are pixels: sourceBounds is the offset to send.
    const rect = boundsToRect(sourceBounds);
    const place = scale === 1 ? rect : { ...rect, x: Math.round(rect.x / scale), y: Math.round(rect.y / scale) };
    return { ...place, width: imageData.width, height: imageData.height, data: toRGBA8(data, imageData.components) };
  } finally {
    await imageData.dispose();
  }
}

/** The selection as an RGBA8 mask (alpha = selected), or null when nothing is selected. @param {Document} doc */
async function readSelection(doc) {
  const [result] = await action.batchPlay(
    [{ _obj: "get", _target: [{ _property: "selection" }, { _ref: "document", _id: doc.id }] }],
    { synchronousExecution: false },
  );
  const rect = result && result.selection;
  if (!rect) return null;
  const sourceBounds = { left: rect.left._value, top: rect.top._value, right: rect.right._value, bottom: rect.bottom._value };
  const { imageData, sourceBounds: bounds } = await imaging.getSelection({ documentID: doc.id, sourceBounds });
  try {
    const data = /** @type {Uint8Array} */ (await imageData.getData({ chunky: true }));
    return { ...boundsToRect(bounds), data: toRGBA8(data, imageData.components) };
  } finally {
    await imageData.dispose();
  }
}

/** The active document's composite, for decompose (`scale` > 1: that much smaller). @param {{scale?: number}} [options] */
function captureDocument({ scale = 1 } = {}) {
  return core.executeAsModal(async () => {
    const doc = requireDocument();
    return { capture: captureOf(doc), image: await readPixels(doc, undefined, scale) };
  }, { commandName: "LayerBridge: read document" });
}

/**
 * The selected layer's pixels (and the composite and selection for regenerate).
 * @param {{withDocument: boolean, withMask: boolean, scale?: number}} options
 */
function captureSelectedLayer({ withDocument, withMask, scale = 1 }) {
  return core.executeAsModal(async () => {
    const doc = requireDocument();
    const selected = Array.from(doc.activeLayers);
    if (selected.length !== 1) throw new Error("Select exactly one pixel layer.");
    const [layer] = selected;
    if (layer.kind !== constants.LayerKind.NORMAL) throw new Error(`"${layer.name}" is not a pixel layer: select a pixel layer (rasterize it first if needed).`);
    const pixels = await readPixels(doc, layer.id, scale);
    const capture = { ...captureOf(doc), layerId: layer.id, layerName: layer.name, layerBounds: layer.bounds };
    return {
      capture,
      layer: pixels,
      document: withDocument ? await readPixels(doc) : undefined,
      mask: withMask ? await readSelection(doc) : undefined,
    };
  }, { commandName: "LayerBridge: read layer" });
}

/**
 * Run `change` on a document as one history step; roll it back if it throws.
 * @template T @param {number} documentId @param {string} name @param {(doc: Document) => Promise<T>} change
 * @returns {Promise<T | false>} false when the document is gone
 */
function changeDocument(documentId, name, change) {
  return core.executeAsModal(async (context) => {
    const doc = findDocument(documentId);
    if (!doc) return false;
    const suspension = await context.hostControl.suspendHistory({ documentID: documentId, name });
    try {
      const result = await change(doc);
      await context.hostControl.resumeHistory(suspension, true);
      return result;
    } catch (error) {
      await context.hostControl.resumeHistory(suspension, false);
      throw error;
    }
  }, { commandName: name });
}

/** @param {Document} doc @param {number} layerId @param {ResultLayer} layer */
async function writePixels(doc, layerId, layer) {
  const documentId = doc.id;
  const imageData = await imaging.createImageDataFromBuffer(forDepth(layer.data, depthOf(doc)), {
    width: layer.width, height: layer.height, components: 4, chunky: true, colorSpace: "RGB", colorProfile: SRGB,
  });
  try {
    await imaging.putPixels({ documentID: documentId, layerID: layerId, imageData, replace: true, targetBounds: { left: layer.x, top: layer.y, width: layer.width, height: layer.height } });
  } finally {
    await imageData.dispose();
  }
}

/**
 * A group of new pixel layers, index 0 at the bottom, each at its offset. A split's group
 * goes just above its source layer, which is hidden (the group now shows it); other
 * groups go on top of the document.
 * @param {Document} doc @param {{op: string, capture: Capture | null, groupName: string, layers: ResultLayer[]}} result
 */
async function buildGroup(doc, { op, capture, groupName, layers }) {
  const group = /** @type {Layer} */ (await doc.createLayerGroup({ name: groupName }));
  const source = op === "split" && capture?.layerId !== undefined ? findLayer(Array.from(doc.layers), capture.layerId) : undefined;
  const top = Array.from(doc.layers)[0];
  if (source) group.move(source, constants.ElementPlacement.PLACEBEFORE);
  else if (top && top.id !== group.id) group.move(top, constants.ElementPlacement.PLACEBEFORE);
  for (const layer of layers) {
    const pixelLayer = /** @type {Layer} */ (await doc.createPixelLayer({ name: layer.name }));
    // Inside a group a moved layer lands on top: inserting bottom first keeps the server's order.
    pixelLayer.move(group, constants.ElementPlacement.PLACEINSIDE);
    await writePixels(doc, pixelLayer.id, layer);
  }
  if (source) source.visible = false;
  return true;
}

/** @param {{op: string, capture: Capture, groupName: string, layers: ResultLayer[], historyName: string}} result */
function insertLayers(result) {
  return changeDocument(result.capture.documentId, result.historyName, (doc) => buildGroup(doc, result));
}

/**
 * Replace the regenerated layer's pixels in place. If the layer was deleted meanwhile the
 * result becomes a new layer, so it is not lost.
 * @param {{capture: Capture, layers: ResultLayer[], historyName: string}} result
 */
function replaceLayer({ capture, layers, historyName }) {
  return changeDocument(capture.documentId, historyName, async (doc) => {
    const [layer] = layers;
    let target = capture.layerId === undefined ? undefined : findLayer(Array.from(doc.layers), capture.layerId);
    target = target || /** @type {Layer} */ (await doc.createPixelLayer({ name: `${capture.layerName || layer.name} (regenerated)` }));
    await writePixels(doc, target.id, layer);
    return true;
  });
}

/**
 * A result whose document is gone (or a generate with no document open): a new
 * transparent document of the result's size, holding the layers.
 * @param {{op: string, capture: Capture | null, width: number, height: number, title: string, groupName: string, layers: ResultLayer[], historyName: string}} result
 */
async function insertIntoNewDocument(result) {
  const documentId = await core.executeAsModal(async () => {
    const doc = await app.createDocument({
      name: result.title, width: result.width, height: result.height, resolution: 72, depth: 8,
      mode: constants.NewDocumentMode.RGB, fill: constants.DocumentFill.TRANSPARENT,
    });
    if (!doc) throw new Error("Photoshop could not create a document");
    return doc.id;
  }, { commandName: "LayerBridge: new document" });
  // The source layer of a regenerate or split is not in the new document: insert a plain group.
  return changeDocument(documentId, result.historyName, (doc) => buildGroup(doc, { ...result, op: "generate", capture: null }));
}

module.exports = {
  clientName,
  activeDocumentSize,
  captureDocument,
  captureSelectedLayer,
  insertLayers,
  replaceLayer,
  insertIntoNewDocument,
};
