"use strict";
/**
 * What each job stage is called where people read it. The same table as the server
 * package's `layerbridge/stages.py` (the CLI and the GIMP plug-in read that one); a test
 * checks that the two agree.
 */

/** @type {Record<string, string>} */
const STAGES = {
  queued: "Waiting in the server's queue",
  start: "Starting",
  caption: "Describing the image",
  encode: "Encoding",
  denoise: "Generating",
  decode: "Decoding",
  background: "Finding the background",
  regions: "Finding regions",
  text: "Finding text",
  order: "Ordering the layers",
  merge: "Merging alike parts",
  peel: "Separating layers",
  fill: "Filling hidden areas",
  seams: "Tidying seams",
  alpha: "Refining edges",
  save: "Saving",
  done: "Finishing",
};

/**
 * "peel" as "Separating layers"; with model steps, "Generating (step 3 of 20)".
 * @param {string} stage @param {number | null} [step] @param {number | null} [steps]
 */
function stageText(stage, step, steps) {
  const raw = String(stage || "");
  let text = STAGES[raw] || (raw ? raw.charAt(0).toUpperCase() + raw.slice(1).replace(/_/g, " ") : "Working");
  if (steps) text += ` (step ${step || 0} of ${steps})`;
  return text;
}

/**
 * Seconds left, only where the engine counts model steps (the one progress that runs at an
 * even pace); null elsewhere, rather than a guess that jumps about.
 * @param {number} fraction @param {number} elapsedS @param {number | null} [step] @param {number | null} [steps]
 */
function remainingSeconds(fraction, elapsedS, step, steps) {
  if (!steps || !step || elapsedS <= 0 || fraction <= 0) return null;
  return Math.max(0, (elapsedS * (1 - fraction)) / fraction);
}

/** @param {number} seconds */
function durationText(seconds) {
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s left`;
  return `about ${Math.round(seconds / 60)} min left`;
}

module.exports = { STAGES, stageText, remainingSeconds, durationText };
