// llama_check.mjs - llama.cpp's own grammar parser (node-llama-cpp's
// LlamaGrammar) as a judge: for each case, does llama.cpp parse the
// grammar, does it accept each text as a complete sentence, and (with a
// MODEL, whose vocabulary the token ids are of) does llama.cpp's grammar
// state take each token sequence one token after the other (outputs cut by
// max_tokens: a prefix of a sentence)?
// usage: node llama_check.mjs CASES.json [MODEL]
//   CASES.json: [{name, grammar, texts: [..], seqs: [[ids..], ..]}]
// Prints one line per case; "cannot check" when llama.cpp cannot load the
// grammar. Exit status 1 when a text or a token is refused.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const base = path.resolve(process.env.VT_NODE_DIR || process.cwd());
const require = createRequire(path.join(base, "x.js"));
const { getLlama, LlamaGrammar, LlamaGrammarEvaluationState } =
    await import(require.resolve("node-llama-cpp"));
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = process.argv[3] ? await llama.loadModel({ modelPath: process.argv[3] }) : null;
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
    let seqOk = 0, seqFirst = null;
    const seqs = model ? (c.seqs || []) : [];
    for (const sq of seqs) {
        const st = new LlamaGrammarEvaluationState({ model, grammar: g });
        let good = true;
        for (const t of sq) {
            if (!llama._bindings.AddonSampler.canBeNextTokenForGrammarEvaluationState(st._state, t)) {
                good = false;
                break;
            }
            llama._bindings.AddonSampler.acceptGrammarEvaluationStateToken(st._state, t);
        }
        if (good) seqOk++;
        else if (!seqFirst) seqFirst = sq;
    }
    refused += seqs.length - seqOk;
    const bad = ok !== c.texts.length || seqOk !== seqs.length;
    console.log(`${bad ? "BAD " : "ok  "} ${c.name}: llama.cpp accepts ${ok} of ${c.texts.length} ` +
                `complete texts` + (model ? `, takes ${seqOk} of ${seqs.length} cut token sequences` : "") +
                (first !== null ? `; first refused: ${JSON.stringify(first).slice(0, 200)}` : "") +
                (seqFirst ? `; first refused sequence: ${JSON.stringify(seqFirst).slice(0, 200)}` : ""));
}
console.log(`llama_check.mjs: ${cases.length} grammars, ${refused} texts or sequences refused`);
process.exit(refused ? 1 : 0);
