"use strict";
/**
 * Build the installable plug-in: dist/layerbridge-<version>.ccx, a zip with manifest.json
 * at its root (what Adobe's packager makes; double-click it or load it in UXP Developer Tool).
 * Usage: npm run package   (or require it and call buildCcx() from a test)
 */

const fs = require("node:fs");
const path = require("node:path");
const JSZip = require("jszip");

const ROOT = path.resolve(__dirname, "..");
/** What ships: the manifest, the panel page, its entry script and the panel's modules. */
const SHIPPED = ["manifest.json", "index.html", "main.js", "src"];

/** @param {string} relative @returns {string[]} files under it, relative to ROOT, sorted */
function filesUnder(relative) {
  const full = path.join(ROOT, relative);
  if (fs.statSync(full).isFile()) return [relative];
  return fs.readdirSync(full).sort().flatMap((name) => filesUnder(path.posix.join(relative, name)));
}

/** @param {{outDir?: string}} [options] @returns {Promise<string>} the .ccx path */
async function buildCcx({ outDir = path.join(ROOT, "dist") } = {}) {
  const manifest = JSON.parse(fs.readFileSync(path.join(ROOT, "manifest.json"), "utf8"));
  const zip = new JSZip();
  // A fixed date keeps the archive byte-identical between builds.
  const date = new Date(Date.UTC(2024, 0, 1));
  for (const file of SHIPPED.flatMap(filesUnder)) zip.file(file, fs.readFileSync(path.join(ROOT, file)), { date, createFolders: false });
  const bytes = await zip.generateAsync({ type: "nodebuffer", compression: "DEFLATE", platform: "UNIX" });
  fs.mkdirSync(outDir, { recursive: true });
  const out = path.join(outDir, `layerbridge-${manifest.version}.ccx`);
  fs.writeFileSync(out, bytes);
  return out;
}

if (require.main === module) {
  buildCcx().then((out) => console.log(`built ${path.relative(process.cwd(), out)}`), (error) => {
    console.error(error);
    process.exit(1);
  });
}

module.exports = { buildCcx, SHIPPED };
