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
  for (const [id, enabled] of Object.entries(view.enabled)) {
    if (enabled) element(id).removeAttribute("disabled");
    else element(id).setAttribute("disabled", "");
  }
  const offers = element("offers");
  offers.innerHTML = "";
  for (const offer of view.offers) {
    const button = document.createElement("sp-button");
    button.textContent = offer.text;
    button.addEventListener("click", () => run(() => controller.insertIntoNewDocument(offer.job)));
    offers.appendChild(button);
  }
}

element("generate").addEventListener("click", () => run(() => controller.generate({ prompt: prompt(), layers: layerCount(), seed: seed() })));
element("decompose").addEventListener("click", () => run(() => controller.decomposeDocument({ prompt: prompt(), layers: layerCount(), seed: seed() })));
element("regenerate").addEventListener("click", () => run(() => controller.regenerateSelectedLayer({ prompt: prompt(), seed: seed() })));
element("split").addEventListener("click", () => run(() => controller.splitSelectedLayer({ layers: layerCount(), seed: seed() })));
element("cancel").addEventListener("click", () => controller.cancel());
element("save-address").addEventListener("click", () => controller.setAddress(String(element("address").value || ""), String(element("token").value || "")));

element("address").value = controller.settings.address;
element("token").value = controller.settings.token;
controller.subscribe(render);
render();
controller.start();
