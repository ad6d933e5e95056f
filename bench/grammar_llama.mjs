// grammar_llama.mjs - llama.cpp's grammar sampler through node-llama-cpp, for
// make bench-grammar (bench/grammar_bench.c): generates RUNS completions of
// MAXTOK tokens from MODEL under the GBNF grammar in GRAMMAR (LlamaGrammar)
// and as many without a grammar, and reports the time per token of each; the
// difference is what the grammar costs llama.cpp per token (CPU time of the
// process, so that other processes on the machine do not count). The generated
// token ids go out too, so that vitamin's masks can be timed on exactly the
// same sequences. With --schema FILE the grammar is also made by
// node-llama-cpp's own converter (createGrammarForJsonSchema) and timed.
// usage: node grammar_llama.mjs MODEL GRAMMAR RUNS MAXTOK [--schema FILE]
// prints one JSON object on stdout.
import fs from "node:fs";
import path from "node:path";
import { createRequire } from "node:module";

const base = path.resolve(process.env.VT_NODE_DIR || process.cwd());
const require = createRequire(path.join(base, "x.js"));
const { getLlama, LlamaGrammar, LlamaCompletion } = await import(require.resolve("node-llama-cpp"));
const [modelPath, grammarPath, runsS, maxS, ...rest] = process.argv.slice(2);
const runs = Number(runsS), maxTokens = Number(maxS);
const schemaPath = rest[0] === "--schema" ? rest[1] : null;
const llama = await getLlama({ gpu: false, build: "never", logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const context = await model.createContext({ contextSize: 512, threads: 1 });
const seq = context.getSequence();
const completion = new LlamaCompletion({ contextSequence: seq });

async function timed(grammar, seed) {
    const tokens = [];
    await seq.clearHistory();
    const c0 = process.cpuUsage();
    await completion.generateCompletion("x", {
        grammar, maxTokens, seed, temperature: 1,
        onToken: (t) => tokens.push(...t),
    });
    const c = process.cpuUsage(c0); // CPU time: other processes on the machine do not count
    const ns = (c.user + c.system) * 1000;
    return { ns, tokens };
}

const result = { with: { ns: 0, tokens: 0 }, without: { ns: 0, tokens: 0 }, seqs: [] };
const grammar = new LlamaGrammar(llama, { grammar: fs.readFileSync(grammarPath, "utf8") });
await timed(grammar, 12345); // warm-up
for (let r = 0; r < runs; r++) {
    const a = await timed(grammar, 1 + r);
    result.with.ns += a.ns;
    result.with.tokens += a.tokens.length;
    result.seqs.push(a.tokens);
    const b = await timed(undefined, 1 + r);
    result.without.ns += b.ns;
    result.without.tokens += b.tokens.length;
}
if (schemaPath) {
    const g2 = await llama.createGrammarForJsonSchema(JSON.parse(fs.readFileSync(schemaPath, "utf8")));
    result.own = { ns: 0, tokens: 0 };
    for (let r = 0; r < runs; r++) {
        const a = await timed(g2, 1 + r);
        result.own.ns += a.ns;
        result.own.tokens += a.tokens.length;
    }
}
process.stdout.write(JSON.stringify(result));
await context.dispose();
await model.dispose();
