"use strict";
const js = require("@eslint/js");
const globals = require("globals");

module.exports = [
  { ignores: ["node_modules/", "dist/"] },
  js.configs.recommended,
  {
    files: ["test/**/*.js", "scripts/**/*.js", "eslint.config.js"],
    languageOptions: { sourceType: "commonjs", ecmaVersion: 2022, globals: { ...globals.node } },
  },
  {
    // The panel runs in UXP: a browser-like global scope (WebSocket, localStorage, document)
    // with CommonJS require.
    files: ["src/**/*.js", "main.js"],
    languageOptions: { sourceType: "commonjs", ecmaVersion: 2022, globals: { ...globals.browser, ...globals.commonjs } },
  },
];
