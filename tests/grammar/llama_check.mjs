// llama_check.mjs - llama.cpp's own grammar parser (node-llama-cpp's
// LlamaGrammar) as a judge: for each case, does llama.cpp parse the
// grammar, and does it accept each text as a complete sentence?
// usage: node llama_check.mjs CASES.json
//   CASES.json: [{name, grammar, texts: [..]}]
// Prints one line per case: how many texts llama.cpp accepted; "cannot
// check" when llama.cpp cannot load the grammar. Exit status 1 when a text
// is refused.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const base = path.resolve(process.env.VT_NODE_DIR || process.cwd());
const require = createRequire(path.join(base, "x.js"));
const { getLlama, LlamaGrammar } = await import(require.resolve("node-llama-cpp"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const cases = JSON.parse(fs.readFileSync(process.argv[2], "utf8"));
let refused = 0;
for (const c of cases) {
    let g;
    try {
        g = new LlamaGrammar(llama, { grammar: c.grammar });
    } catch (e) {
        console.log(`cannot check ${c.name}: llama.cpp does not load it (${e.message})`);
        continue;
    }
    let ok = 0, first = null;
    for (const t of c.texts) {
        if (g._testText(t)) ok++;
        else if (!first) first = t;
    }
    refused += c.texts.length - ok;
    console.log(`${ok === c.texts.length ? "ok  " : "BAD "} ${c.name}: llama.cpp accepts ${ok} of ` +
                `${c.texts.length}` + (first !== null ? `; first refused: ${JSON.stringify(first).slice(0, 200)}` : ""));
}
console.log(`llama_check.mjs: ${cases.length} grammars, ${refused} texts refused`);
process.exit(refused ? 1 : 0);
