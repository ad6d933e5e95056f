// validate.mjs - checks generated outputs against their JSON Schemas with
// ajv (ajv-formats for date, time, uuid, email, ...).
// usage: node validate.mjs CASES.json OUTPUTS.jsonl
//   CASES.json: [{name, schema}], OUTPUTS.jsonl: {"case": i, "out": "...",
//   "finish": "stop" | "length"} per line. An output that finished with
//   "stop" must parse as JSON and validate; "length" ones (the C side allows
//   them only for unbounded schemas) are counted, not parsed.
// Prints one line per case and a summary; exit status 1 on any failure.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.resolve(process.env.VT_NODE_DIR || process.cwd(), "x.js"));
const Ajv = require("ajv");
const addFormats = require("ajv-formats");
const [casesFile, outFile] = process.argv.slice(2);
const cases = JSON.parse(fs.readFileSync(casesFile, "utf8"));
const validators = cases.map((c) => {
    const ajv = new Ajv({ strict: false, allErrors: true });
    addFormats(ajv);
    return ajv.compile(c.schema);
});
const stats = cases.map(() => ({ ok: 0, length: 0, bad: 0, first: null }));
for (const line of fs.readFileSync(outFile, "utf8").split("\n")) {
    if (!line) continue;
    const r = JSON.parse(line);
    const s = stats[r.case];
    if (r.finish === "length") { s.length++; continue; }
    let v, why = null;
    try {
        v = JSON.parse(r.out);
        if (!validators[r.case](v)) why = JSON.stringify(validators[r.case].errors).slice(0, 300);
    } catch (e) {
        why = "not JSON: " + e.message;
    }
    if (why) { s.bad++; if (!s.first) s.first = `${JSON.stringify(r.out).slice(0, 200)}: ${why}`; }
    else s.ok++;
}
let bad = 0, total = 0, lengths = 0;
cases.forEach((c, i) => {
    const s = stats[i];
    total += s.ok + s.bad + s.length;
    lengths += s.length;
    bad += s.bad;
    console.log(`${s.bad ? "BAD " : "ok  "} ${c.name}: ${s.ok} valid, ${s.length} at max_tokens` +
                (s.bad ? `, ${s.bad} INVALID, first: ${s.first}` : ""));
});
console.log(`validate.mjs: ${cases.length} schemas, ${total} outputs, ${bad} invalid, ${lengths} at max_tokens`);
process.exit(bad ? 1 : 0);
