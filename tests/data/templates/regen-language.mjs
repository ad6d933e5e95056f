// Refreshes language.json (the interpreter's language cases) from the oracle:
// (the first element holds the shared context "std"), for every case not marked "oracle": false, "out" becomes @huggingface/jinja's
// rendering, or "oracle_error" its error message. Run from a folder where
// @huggingface/jinja is installed, with the clock pinned as regen.sh does:
//   cd $ORACLE && TZ=UTC node --import file://$PWD/fixed-date.mjs $REPO/tests/data/templates/regen-language.mjs
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
const require = createRequire(path.join(process.cwd(), "noop.js"));
const { Template } = require("@huggingface/jinja");
const file = new URL("./language.json", import.meta.url);
const cases = JSON.parse(fs.readFileSync(file, "utf8"));
const std = cases.find((c) => c.std)?.std ?? {}; // "c": "std" names this shared context
for (const c of cases) {
  if (c.std || c.oracle === false) continue;
  delete c.out;
  delete c.oracle_error;
  try {
    c.out = new Template(c.t).render(c.c === "std" ? std : c.c || {});
  } catch (e) {
    c.oracle_error = e.message;
  }
}
fs.writeFileSync(file, "[\n" + cases.map((c) => JSON.stringify(c)).join(",\n") + "\n]\n");
