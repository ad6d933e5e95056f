// tokenize_speed.mjs - llama.cpp's tokenization speed, through node-llama-cpp's
// model.tokenize (the vocabulary loaded with vocabOnly), for bench_tokenizer.sh.
//   NODE_PATH=$ORACLE/node_modules node bench/tokenize_speed.mjs VOCAB.gguf TEXTFILE [REPEAT]
// Prints {"bytes":..,"tokens":..,"seconds":..,"mb_per_s":..}: the best of REPEAT runs
// (default 5) after one warm-up, special tokens not parsed, no BOS.
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
let nlc;
try { nlc = await import(require.resolve("node-llama-cpp")); } catch { nlc = await import("node-llama-cpp"); }
const { getLlama, LlamaLogLevel } = nlc;
const [modelPath, textPath, repeatArg] = process.argv.slice(2);
const repeat = Number(repeatArg || 5);
const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath, vocabOnly: true });
const text = fs.readFileSync(textPath, "utf8");
const bytes = Buffer.byteLength(text, "utf8");
let tokens = model.tokenize(text, false).length; // warm-up
let best = Infinity;
for (let r = 0; r < repeat; r++) {
  const t0 = process.hrtime.bigint();
  tokens = model.tokenize(text, false).length;
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  if (dt < best) best = dt;
}
console.log(JSON.stringify({ bytes, tokens, seconds: best, mb_per_s: bytes / 1e6 / best }));
await model.dispose();
