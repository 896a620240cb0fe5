"use strict";
/**
 * An in-memory Photoshop for tests: the parts of the `photoshop` and `uxp` modules the
 * panel uses, typed against `@types/photoshop` (tsc checks this file), so the fake cannot
 * drift from Adobe's API unnoticed. It records what a test checks: layers, groups, names,
 * bounds and pixels, history steps and modal scopes, and it refuses what Photoshop refuses
 * (changes outside a modal scope, two modal scopes at once).
 */

/** @typedef {typeof import("photoshop").imaging} Imaging */
/** @typedef {typeof import("photoshop").core} Core */
/** @typedef {typeof import("photoshop").action} Action */
/** @typedef {import("photoshop/dom/Document").Document} Document */
/** @typedef {import("photoshop/dom/Layer").Layer} Layer */
/** @typedef {import("photoshop/dom/ImagingModule").imaging.PhotoshopImageData} ImageData */
/** @typedef {{left: number, top: number, right: number, bottom: number}} Bounds */

const ElementPlacement = /** @type {const} */ ({ PLACEBEFORE: "placeBefore", PLACEAFTER: "placeAfter", PLACEINSIDE: "placeInside", PLACEATBEGINNING: "placeAtBeginning", PLACEATEND: "placeAtEnd" });
const constants = {
  ElementPlacement,
  LayerKind: { NORMAL: "pixel", GROUP: "group" },
  NewDocumentMode: { RGB: "RGBColorMode" },
  BitsPerChannelType: { EIGHT: "bitDepth8", SIXTEEN: "bitDepth16", THIRTYTWO: "bitDepth32" },
  DocumentFill: { TRANSPARENT: "transparent", WHITE: "white" },
};

class FakePhotoshop {
  constructor() {
    this.nextId = 1;
    /** @type {FakeDocument[]} */
    this.documents = [];
    /** @type {FakeDocument | null} */
    this.activeDocument = null;
    /** @type {{commandName: string}[]} every modal scope entered */
    this.modalScopes = [];
    this.inModal = false;
    /** @type {{documentID: number, name: string, committed: boolean}[]} every history step */
    this.historySteps = [];
    /** @type {Map<number, {documentID: number, name: string, restore: () => void}>} */
    this.openSuspensions = new Map();
    this.imaging = this.makeImaging();
    this.core = this.makeCore();
    this.action = this.makeAction();
    this.app = this.makeApp();
    this.uxp = { versions: { uxp: "uxp-8.0.0", plugin: "0.1.0" }, host: { name: "Photoshop", version: "25.0.0", uiLocale: "en_US" } };
    this.module = { app: this.app, core: this.core, imaging: this.imaging, action: this.action, constants };
  }

  /** @param {string} what */
  requireModal(what) {
    if (!this.inModal) throw new Error(`${what}: the command needs a modal scope (core.executeAsModal)`);
  }

  /** A new document, with a white background layer if asked. @param {{width: number, height: number, title?: string, background?: boolean, bits?: 8 | 16 | 32}} options */
  addDocument({ width, height, title = "Untitled-1", background = false, bits = 8 }) {
    const doc = new FakeDocument(this, this.nextId++, title, width, height);
    doc.depth = bits;
    this.documents.push(doc);
    this.activeDocument = doc;
    if (background) {
      const layer = new FakeLayer(this, doc, this.nextId++, "Background", "pixel");
      layer.isBackgroundLayer = true;
      layer.pixels = { bounds: { left: 0, top: 0, right: width, bottom: height }, data: new Uint8Array(width * height * 4).fill(255) };
      doc.children.push(layer);
      doc.activeLayers = [layer];
    }
    return doc;
  }

  makeApp() {
    const fake = this;
    return {
      get documents() { return fake.documents; },
      get activeDocument() { return /** @type {FakeDocument} */ (fake.activeDocument); },
      /** @param {Parameters<import("photoshop/dom/Photoshop").Photoshop["createDocument"]>[0]} options */
      async createDocument(options) {
        fake.requireModal("createDocument");
        if (options?.depth !== 8) throw new Error("the panel creates 8-bit documents");
        return fake.addDocument({ width: Number(options?.width), height: Number(options?.height), title: options?.name });
      },
    };
  }

  /** @returns {Pick<Core, "executeAsModal">} */
  makeCore() {
    const fake = this;
    return {
      async executeAsModal(targetFunction, options) {
        if (fake.inModal) throw new Error("host is in a modal state");
        fake.modalScopes.push({ commandName: options.commandName });
        fake.inModal = true;
        try {
          /** @type {import("photoshop/dom/CoreModules").ExecutionContext} */
          const context = {
            isCancelled: false,
            onCancel: undefined,
            reportProgress: () => {},
            hostControl: {
              async suspendHistory({ documentID, name }) {
                fake.requireModal("suspendHistory");
                const historySuspensionID = fake.nextId++;
                const restore = fake.documentById(documentID).snapshot();
                fake.openSuspensions.set(historySuspensionID, { documentID, name, restore });
                return { historySuspensionID };
              },
              async resumeHistory({ historySuspensionID }, commit = true) {
                const open = fake.openSuspensions.get(historySuspensionID);
                if (!open) throw new Error(`no history suspension ${historySuspensionID}`);
                fake.openSuspensions.delete(historySuspensionID);
                if (!commit) open.restore(); // Photoshop rolls the suspended changes back
                fake.historySteps.push({ documentID: open.documentID, name: open.name, committed: commit });
              },
              async registerAutoCloseDocument() {},
              async unregisterAutoCloseDocument() {},
            },
          };
          const result = await targetFunction(context);
          if (fake.openSuspensions.size) throw new Error("a history suspension was left open when the modal scope ended");
          return result;
        } finally {
          fake.inModal = false;
        }
      },
    };
  }

  /** @returns {Pick<Action, "batchPlay">} */
  makeAction() {
    const fake = this;
    return {
      async batchPlay(commands) {
        return commands.map((command) => {
          const target = /** @type {any[]} */ (command._target);
          if (command._obj !== "get" || target?.[0]?._property !== "selection") throw new Error(`the fake does not play ${JSON.stringify(command)}`);
          const doc = fake.documents.find((d) => d.id === target[1]._id);
          if (!doc) throw new Error("no such document");
          /** @type {import("photoshop/dom/CoreModules").ActionDescriptor} */
          const result = { _obj: "get" };
          if (!doc.selectionMask) return result;
          const px = (/** @type {number} */ value) => ({ _unit: "pixelsUnit", _value: value });
          const { left, top, right, bottom } = doc.selectionMask.bounds;
          return { ...result, selection: { _obj: "rectangle", top: px(top), left: px(left), bottom: px(bottom), right: px(right) } };
        });
      },
    };
  }

  /** @returns {Pick<Imaging, "getPixels" | "putPixels" | "getSelection" | "createImageDataFromBuffer">} */
  makeImaging() {
    const fake = this;
    return {
      async createImageDataFromBuffer(arrayBuffer, options) {
        if (!(arrayBuffer instanceof Uint8Array || arrayBuffer instanceof Uint16Array)) throw new Error("the fake handles 8- and 16-bit data");
        if (arrayBuffer.length !== options.width * options.height * options.components) throw new Error("buffer size does not match width * height * components");
        if (options.colorProfile !== "sRGB IEC61966-2.1" || options.colorSpace !== "RGB" || options.chunky !== true) throw new Error(`unexpected image format ${JSON.stringify(options)}`);
        return makeImageData(arrayBuffer.slice(), options.width, options.height, options.components);
      },
      async getPixels(options) {
        const doc = fake.documentById(options.documentID);
        if (options.componentSize !== 8 || options.colorProfile !== "sRGB IEC61966-2.1") throw new Error("the panel must ask for 8-bit sRGB");
        const source = options.layerID === undefined ? doc.composite() : doc.layerById(options.layerID).pixels;
        if (!source) throw new Error("the layer has no pixels");
        const background = options.layerID !== undefined && doc.layerById(options.layerID).isBackgroundLayer;
        // Background layers come without alpha: 3 components, as in Photoshop.
        const rgba8 = source.data instanceof Uint16Array ? to8Bit(source.data) : source.data.slice();
        const data = background ? dropAlpha(rgba8) : rgba8;
        const { left, top, right, bottom } = source.bounds;
        const components = background ? 3 : 4;
        if (options.targetSize) {
          // Photoshop resamples to targetSize, given for the whole document; the bounds stay the document's.
          const factor = (options.targetSize.width ?? doc.width) / doc.width;
          const small = resample(data, right - left, bottom - top, components, factor);
          return { imageData: makeImageData(small.data, small.width, small.height, components), sourceBounds: { ...source.bounds }, level: 0 };
        }
        return { imageData: makeImageData(data, right - left, bottom - top, components), sourceBounds: { ...source.bounds }, level: 0 };
      },
      async putPixels(options) {
        fake.requireModal("putPixels");
        const doc = fake.documentById(options.documentID);
        const layer = doc.layerById(options.layerID);
        const { imageData, targetBounds } = options;
        if (!targetBounds) throw new Error("the panel always gives targetBounds");
        if (imageData.components !== 4 || !options.replace) throw new Error("the fake handles RGBA replace only");
        // Assumed, as the imaging docs do not promise a depth conversion on put: data of the document's depth.
        if (imageData.componentSize !== doc.depth) throw new Error(`${imageData.componentSize}-bit data into a ${doc.depth}-bit document`);
        const data = /** @type {Uint8Array | Uint16Array} */ (await imageData.getData({ chunky: true }));
        const bounds = { left: targetBounds.left, top: targetBounds.top, right: targetBounds.left + imageData.width, bottom: targetBounds.top + imageData.height };
        layer.pixels = { bounds, data };
      },
      async getSelection(options) {
        const doc = fake.documentById(options.documentID);
        if (!doc.selectionMask) throw new Error("no selection");
        const { bounds, data } = doc.selectionMask;
        return { imageData: makeImageData(data.slice(), bounds.right - bounds.left, bounds.bottom - bounds.top, 1), sourceBounds: { ...bounds } };
      },
    };
  }

  /** @param {number | undefined} id */
  documentById(id) {
    const doc = this.documents.find((d) => d.id === id);
    if (!doc) throw new Error(`document ${id} is not open`);
    return doc;
  }
}

class FakeDocument {
  /** @param {FakePhotoshop} fake @param {number} id @param {string} title @param {number} width @param {number} height */
  constructor(fake, id, title, width, height) {
    this.fake = fake;
    /** @type {Document["id"]} */
    this.id = id;
    /** @type {Document["title"]} */
    this.title = title;
    /** @type {Document["width"]} */
    this.width = width;
    /** @type {Document["height"]} */
    this.height = height;
    /** @type {FakeLayer[]} top-level layers, top first (Photoshop's order) */
    this.children = [];
    /** @type {FakeLayer[]} */
    this.activeLayers = [];
    /** @type {{bounds: Bounds, data: Uint8Array} | null} */
    this.selectionMask = null;
    /** @type {8 | 16 | 32} */
    this.depth = 8;
  }

  /** @returns {Document["bitsPerChannel"]} */
  get bitsPerChannel() {
    const { EIGHT, SIXTEEN, THIRTYTWO } = constants.BitsPerChannelType;
    return /** @type {Document["bitsPerChannel"]} */ ({ 8: EIGHT, 16: SIXTEEN, 32: THIRTYTWO }[this.depth]);
  }

  /** The layer tree as it is now, and a function that puts it back (for a rolled-back history step). */
  snapshot() {
    /** @param {FakeLayer[]} layers @returns {() => void} */
    const save = (layers) => {
      const saved = layers.map((layer) => ({ layer, parent: layer.parent, name: layer.layerName, shown: layer.shownFlag, pixels: layer.pixels, restoreChildren: save(layer.children) }));
      const order = [...layers];
      return () => {
        layers.splice(0, layers.length, ...order);
        for (const s of saved) {
          Object.assign(s.layer, { parent: s.parent, layerName: s.name, shownFlag: s.shown, pixels: s.pixels });
          s.restoreChildren();
        }
      };
    };
    const restoreTree = save(this.children);
    const active = [...this.activeLayers];
    return () => { restoreTree(); this.activeLayers = active; };
  }

  get layers() {
    return this.children;
  }

  /** @param {Parameters<Document["createPixelLayer"]>[0]} options */
  async createPixelLayer(options) {
    this.fake.requireModal("createPixelLayer");
    return this.addAboveActive(new FakeLayer(this.fake, this, this.fake.nextId++, options?.name || "Layer", "pixel"));
  }

  /** @param {Parameters<Document["createLayerGroup"]>[0]} options */
  async createLayerGroup(options) {
    this.fake.requireModal("createLayerGroup");
    return this.addAboveActive(new FakeLayer(this.fake, this, this.fake.nextId++, options?.name || "Group 1", "group"));
  }

  /** New layers go above the active layer and become active, as in Photoshop. @param {FakeLayer} layer */
  addAboveActive(layer) {
    const active = this.activeLayers[0];
    const siblings = active ? active.siblings() : this.children;
    siblings.splice(active ? siblings.indexOf(active) : 0, 0, layer);
    layer.parent = active ? active.parent : null;
    this.activeLayers = [layer];
    return layer;
  }

  /** @type {Document["closeWithoutSaving"]} */
  closeWithoutSaving() {
    this.fake.documents = this.fake.documents.filter((d) => d !== this);
    this.fake.activeDocument = this.fake.documents[0] || null;
  }

  /** @param {number} id @returns {FakeLayer} */
  layerById(id) {
    const layer = this.allLayers().find((l) => l.id === id);
    if (!layer) throw new Error(`no layer ${id}`);
    return layer;
  }

  /** Every layer, depth first, top first. @returns {FakeLayer[]} */
  allLayers() {
    /** @param {FakeLayer[]} layers @returns {FakeLayer[]} */
    const walk = (layers) => layers.flatMap((l) => [l, ...walk(l.children)]);
    return walk(this.children);
  }

  /** The visible pixel layers composited over transparency (straight alpha), the whole canvas. */
  composite() {
    const { width, height } = this;
    const out = new Float64Array(width * height * 4);
    /** @param {FakeLayer} layer @returns {boolean} */
    const shown = (layer) => layer.visible && (!layer.parent || shown(layer.parent));
    const bottomFirst = this.allLayers().filter((l) => l.kind === "pixel" && l.pixels && shown(l)).reverse();
    for (const layer of bottomFirst) {
      const { bounds, data } = /** @type {{bounds: Bounds, data: Uint8Array | Uint16Array}} */ (layer.pixels);
      overComposite(out, width, height, { bounds, data: data instanceof Uint16Array ? to8Bit(data) : data });
    }
    return { bounds: { left: 0, top: 0, right: width, bottom: height }, data: Uint8Array.from(out, (v) => Math.round(v)) };
  }
}

class FakeLayer {
  /** @param {FakePhotoshop} fake @param {FakeDocument} doc @param {number} id @param {string} name @param {"pixel" | "group"} kind */
  constructor(fake, doc, id, name, kind) {
    this.fake = fake;
    this.doc = doc;
    /** @type {Layer["id"]} */
    this.id = id;
    this.layerName = name;
    /** @type {"pixel" | "group"} Photoshop's LayerKind.NORMAL and LayerKind.GROUP */
    this.kind = kind;
    /** @type {Layer["isBackgroundLayer"]} */
    this.isBackgroundLayer = false;
    this.shownFlag = true;
    /** @type {FakeLayer | null} */
    this.parent = null;
    /** @type {FakeLayer[]} children of a group, top first */
    this.children = [];
    /** @type {{bounds: Bounds, data: Uint8Array | Uint16Array} | null} RGBA at bounds, of the document's depth */
    this.pixels = null;
  }

  /** @returns {Layer["name"]} */
  get name() { return this.layerName; }
  set name(name) { this.fake.requireModal("set name"); this.layerName = name; }

  /** @returns {Layer["visible"]} */
  get visible() { return this.shownFlag; }
  set visible(visible) { this.fake.requireModal("set visible"); this.shownFlag = visible; }

  /** @returns {Layer["bounds"]} */
  get bounds() {
    const b = this.pixels ? this.pixels.bounds : { left: 0, top: 0, right: 0, bottom: 0 };
    return /** @type {Layer["bounds"]} */ ({ ...b, width: b.right - b.left, height: b.bottom - b.top });
  }

  get layers() {
    return this.kind === "group" ? this.children : null;
  }

  siblings() {
    return this.parent ? this.parent.children : this.doc.children;
  }

  /** @param {FakeLayer} relativeObject @param {Parameters<Layer["move"]>[1]} insertLocation */
  move(relativeObject, insertLocation) {
    this.fake.requireModal("move");
    const from = this.siblings();
    from.splice(from.indexOf(this), 1);
    if (insertLocation === ElementPlacement.PLACEINSIDE) {
      if (relativeObject.kind !== "group") throw new Error("placeInside needs a group");
      relativeObject.children.unshift(this); // on top inside the group
      this.parent = relativeObject;
    } else if (insertLocation === ElementPlacement.PLACEBEFORE || insertLocation === ElementPlacement.PLACEAFTER) {
      const to = relativeObject.siblings();
      to.splice(to.indexOf(relativeObject) + (insertLocation === ElementPlacement.PLACEAFTER ? 1 : 0), 0, this);
      this.parent = relativeObject.parent;
    } else {
      throw new Error(`the fake does not move ${insertLocation}`);
    }
  }
}

/**
 * Nearest-neighbour resampling by `factor`, as a stand-in for Photoshop's.
 * @param {Uint8Array} data @param {number} width @param {number} height @param {number} components @param {number} factor
 */
function resample(data, width, height, components, factor) {
  const w = Math.max(1, Math.round(width * factor)), h = Math.max(1, Math.round(height * factor));
  const out = new Uint8Array(w * h * components);
  for (let y = 0; y < h; y++) {
    const sy = Math.min(height - 1, Math.floor((y + 0.5) / factor));
    for (let x = 0; x < w; x++) {
      const sx = Math.min(width - 1, Math.floor((x + 0.5) / factor));
      out.set(data.subarray((sy * width + sx) * components, (sy * width + sx + 1) * components), (y * w + x) * components);
    }
  }
  return { data: out, width: w, height: h };
}

/**
 * @param {Uint8Array | Uint16Array} data @param {number} width @param {number} height @param {number} components
 * @returns {ImageData}
 */
function makeImageData(data, width, height, components) {
  let disposed = false;
  return {
    width, height, components, componentSize: data instanceof Uint16Array ? 16 : 8, chunky: true, colorSpace: components === 1 ? "Grayscale" : "RGB",
    colorProfile: "sRGB IEC61966-2.1", hasAlpha: components === 4,
    pixelFormat: components === 4 ? "RGBA" : components === 3 ? "RGB" : "Grayscale", type: "image/uncompressed",
    /** @param {import("photoshop/dom/ImagingModule").imaging.GetDataOptions} options */
    async getData(options) {
      if (disposed) throw new Error("image data used after dispose");
      if (options.chunky !== true) throw new Error("the panel reads chunky data");
      return data.slice();
    },
    async dispose() { disposed = true; },
  };
}

/** Photoshop's 16-bit range 0..32768 down to 8 bits. @param {Uint16Array} data */
function to8Bit(data) {
  return Uint8Array.from(data, (v) => Math.round((v * 255) / 32768));
}

/** @param {Uint8Array} rgba */
function dropAlpha(rgba) {
  const out = new Uint8Array((rgba.length / 4) * 3);
  for (let i = 0, j = 0; i < rgba.length; i += 4, j += 3) out.set(rgba.subarray(i, i + 3), j);
  return out;
}

/** "Over" in straight alpha, onto a float canvas. @param {Float64Array} out @param {number} width @param {number} height @param {{bounds: Bounds, data: Uint8Array}} layer */
function overComposite(out, width, height, { bounds, data }) {
  const w = bounds.right - bounds.left;
  for (let y = Math.max(0, bounds.top); y < Math.min(height, bounds.bottom); y++) {
    for (let x = Math.max(0, bounds.left); x < Math.min(width, bounds.right); x++) {
      const s = ((y - bounds.top) * w + (x - bounds.left)) * 4, d = (y * width + x) * 4;
      const sa = data[s + 3] / 255, da = out[d + 3] / 255, a = sa + da * (1 - sa);
      for (let c = 0; c < 3; c++) out[d + c] = a ? (data[s + c] * sa + out[d + c] * da * (1 - sa)) / a : 0;
      out[d + 3] = a * 255;
    }
  }
}

module.exports = { FakePhotoshop, FakeDocument, FakeLayer, constants };
