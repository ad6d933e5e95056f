// suite.mjs - the schemas of the json-schema-test-suite npm package
// (draft 4 files) that ajv (draft-07 rules, ajv-formats) compiles, as one
// JSON array of {name, schema} on stdout, for test_grammar_json.c to try
// with vitamin's converter. Those ajv refuses are counted on stderr.
// usage: node suite.mjs   (run with NODE_PATH or from a folder with node_modules)
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const require = createRequire(path.resolve(process.env.VT_NODE_DIR || process.cwd(), "x.js"));
const Ajv = require("ajv");
const addFormats = require("ajv-formats");
const dir = path.join(path.dirname(require.resolve("json-schema-test-suite/package.json")),
                      "tests", "draft4");
const out = [];
let refused = 0;
for (const f of fs.readdirSync(dir).filter((f) => f.endsWith(".json")).sort()) {
    const groups = JSON.parse(fs.readFileSync(path.join(dir, f), "utf8"));
    for (const g of groups) {
        const ajv = new Ajv({ strict: false, allErrors: true });
        addFormats(ajv);
        try {
            ajv.compile(g.schema);
        } catch {
            refused++;
            continue;
        }
        out.push({ name: `suite:${f.replace(".json", "")}: ${g.description}`, schema: g.schema });
    }
}
process.stdout.write(JSON.stringify(out));
process.stderr.write(`suite.mjs: ${out.length} schemas, ${refused} that ajv refuses (draft-4 only)\n`);
