// Validates each .glb named on the command line with the Khronos glTF validator; prints one JSON line per file
// ({file, errors, warnings, messages}) so the Python test can read the verdict.
"use strict";
const fs = require("fs");
const validator = require("gltf-validator");

(async () => {
  for (const file of process.argv.slice(2)) {
    const report = await validator.validateBytes(new Uint8Array(fs.readFileSync(file)));
    const issues = report.issues;
    console.log(JSON.stringify({file, errors: issues.numErrors, warnings: issues.numWarnings,
                                messages: issues.messages.map(m => `${m.severity} ${m.code} ${m.pointer || ""}`)}));
  }
})().catch(e => { console.error(String(e)); process.exit(1); });
