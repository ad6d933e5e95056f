// embed_ref.mjs - llama.cpp's embedding of a token list, through node-llama-cpp's
// LlamaEmbeddingContext (the reference for tests/test_embed.c; regenerate its
// expectations with tools/make_embed_refs.sh). Run from the oracle folder:
//   cd $ORACLE && node /path/to/tools/embed_ref.mjs MODEL.gguf 1,2,3
// Prints {"n":N,"norm":|v|,"vector":[...]} with the vector as llama.cpp gives it.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
const { getLlama } = await import(require.resolve("node-llama-cpp"));
const [modelPath, toks] = process.argv.slice(2);
const llama = await getLlama({ gpu: false, logLevel: "error" });
const model = await llama.loadModel({ modelPath });
const ctx = await model.createEmbeddingContext({ threads: 2 });
const tokens = toks.split(",").map(Number);
const e = await ctx.getEmbeddingFor(tokens);
const v = Array.from(e.vector);
let ss = 0;
for (const x of v) ss += x * x;
console.log(JSON.stringify({ n: v.length, norm: Math.sqrt(ss), vector: v }));
await ctx.dispose();
await model.dispose();
