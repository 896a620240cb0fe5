"use strict";
// The panel's entry script, at the plug-in's root so that `./src/...` resolves the same
// whether UXP resolves require paths from the plug-in root or from this file.
require("./src/panel.js");
