"use strict";
/**
 * The panel's DOM glue: reads the form, calls the controller, renders its view.
 * No logic worth testing lives here; it is in controller.js and view.js.
 */

const { Controller } = require("./controller");
const { viewOf } = require("./view");
const host = require("./photoshop_host");

/** @param {string} id @returns {any} */
const element = (id) => document.getElementById(id);

const controller = new Controller({ host, WebSocketClass: WebSocket, storage: localStorage });

/** A whole number typed in the field, or null when it holds none. @param {string} id */
function wholeNumber(id) {
  const value = Number.parseInt(String(element(id).value || "").trim(), 10);
  return Number.isFinite(value) ? value : null;
}

/** The layer count: a number, or "auto" for an empty field or anything else. */
function layerCount() {
  return wholeNumber("layers") ?? "auto";
}

/** The seed: a number, or null for a random one. */
function seed() {
  return wholeNumber("seed");
}

function prompt() {
  return String(element("prompt").value || "");
}

/** Run an action; a refusal (no document, no layer selected) shows as the notice. @param {() => Promise<any>} action */
async function run(action) {
  controller.notice = "";
  try {
    await action();
  } catch (error) {
    controller.notice = error instanceof Error ? error.message : String(error);
  }
  controller.changed();
}

/** @param {string} tag @param {string} text @param {() => void} [onClick] */
function make(tag, text, onClick) {
  const node = document.createElement(tag);
  node.textContent = text;
  if (onClick) node.addEventListener("click", onClick);
  return node;
}

function render() {
  const view = viewOf(controller);
  const indicator = element("indicator");
  indicator.textContent = view.indicator.label;
  indicator.dataset.tone = view.indicator.tone;
  element("detail").textContent = view.indicator.detail;
  element("command").textContent = view.indicator.command || "";
  element("command").classList.toggle("hidden", !view.indicator.command);
  element("progress").value = view.progress.fraction;
  element("stage").textContent = view.progress.text;
  element("layers").setAttribute("placeholder", `auto (${view.layerRange.min}–${view.layerRange.max})`);
  element("notice").textContent = view.notice;
  const reasons = new Set();
  for (const [id, action] of Object.entries(view.actions)) {
    if (action.enabled) element(id).removeAttribute("disabled");
    else element(id).setAttribute("disabled", "");
    element(id).setAttribute("title", action.why);
    if (!action.enabled && id !== "cancel") reasons.add(action.why);
  }
  element("why").textContent = [...reasons].join(" ");
  const preview = element("preview");
  preview.classList.toggle("hidden", !view.preview);
  if (view.preview && preview.getAttribute("src") !== view.preview) preview.setAttribute("src", view.preview);
  const arrived = element("arrived");
  arrived.innerHTML = "";
  for (const layer of view.arrived) {
    const image = document.createElement("img");
    image.setAttribute("src", layer.url);
    image.setAttribute("title", layer.name);
    arrived.appendChild(image);
  }
  element("seed-row").classList.toggle("hidden", !view.seed || view.seed.value === null);
  if (view.seed) {
    element("seed-text").textContent = `Seed ${view.seed.value}${view.seed.pinned ? " (pinned)" : ""}`;
    element("pin-seed").textContent = view.seed.pinned ? "Unpin" : "Pin seed";
  }
  const offers = element("offers");
  offers.innerHTML = "";
  for (const offer of view.offers) {
    const action = offer.kind === "reduced" ? () => controller.workReduced() : () => controller.insertIntoNewDocument(offer.job);
    offers.appendChild(make("sp-button", offer.text, () => run(action)));
  }
  const history = element("history");
  history.innerHTML = "";
  for (const entry of view.history) {
    const row = make("div", "");
    row.className = "history-row";
    row.appendChild(make("span", entry.text));
    if (entry.insertAgain) row.appendChild(make("sp-button", "Insert again", () => run(() => controller.insertAgain(entry.job))));
    history.appendChild(row);
  }
}

function togglePin() {
  const view = viewOf(controller);
  if (!view.seed) return;
  controller.pinSeed(view.seed.pinned ? null : view.seed.value);
  element("seed").value = view.seed.pinned ? "" : String(view.seed.value);
}

element("generate").addEventListener("click", () => run(() => controller.generate({ prompt: prompt(), layers: layerCount(), seed: seed() })));
element("decompose").addEventListener("click", () => run(() => controller.decomposeDocument({ prompt: prompt(), layers: layerCount(), seed: seed() })));
element("regenerate").addEventListener("click", () => run(() => controller.regenerateSelectedLayer({ prompt: prompt(), seed: seed() })));
element("split").addEventListener("click", () => run(() => controller.splitSelectedLayer({ layers: layerCount(), seed: seed() })));
element("cancel").addEventListener("click", () => controller.cancel());
element("save-address").addEventListener("click", () => controller.setAddress(String(element("address").value || ""), String(element("token").value || "")));

element("pin-seed").addEventListener("click", togglePin);

element("address").value = controller.settings.address;
element("prompt").value = controller.last.prompt || "";
element("layers").value = typeof controller.last.layers === "number" ? String(controller.last.layers) : "";
element("seed").value = controller.last.seedPinned && controller.last.seed !== null && controller.last.seed !== undefined ? String(controller.last.seed) : "";
element("token").value = controller.settings.token;
controller.subscribe(render);
render();
controller.start();
