// greedy.mjs - llama.cpp's greedy decoding of a prompt, as reference data for
// tests/test_generate.c (through the node-llama-cpp npm package, which ships
// prebuilt llama.cpp CPU libraries; nothing of it is copied into vitamin).
//
// Run from a folder where node-llama-cpp@3.22.1 is installed:
//   cd /work/oracle && node /work/main/tools/greedy.mjs MODEL.gguf --text "Hello" [-n 32]
//   ... --tokens 1,15043,3186 [-n 32]
//
// --text is tokenized by llama.cpp with the model's BOS rule (BOS prepended
// when the model asks for it) and special tokens parsed, as `vitamin run -p`
// does. The prompt is evaluated in one batch, then one token per step; each
// step asks llama.cpp's own sampler for the next token at temperature 0 (its
// greedy sampler) and also returns the raw logits, whose argmax is checked to
// be the same token. Generation stops after -n tokens or after an
// end-of-generation token (which is included).
//
// Prints one JSON object:
//   {"prompt_tokens":[...], "tokens":[...], "text": "...",
//    "top2":[[id1,logit1,id2,logit2], ...one per generated token]}
// "text" is llama.cpp's detokenization of the generated tokens (without a
// trailing end-of-generation token); "top2" lets a test judge whether a
// divergence happened at a near-tie.
import { createRequire } from "node:module";
import path from "node:path";

const require = createRequire(path.join(process.cwd(), "noop.js"));
let nlc;
try {
  nlc = await import(require.resolve("node-llama-cpp"));
} catch {
  nlc = await import("node-llama-cpp");
}
const { getLlama, LlamaLogLevel } = nlc;

const args = process.argv.slice(2);
const modelPath = args[0];
const opt = (name, dflt) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : dflt;
};
const nGen = parseInt(opt("-n", "32"), 10);
const threads = parseInt(opt("--threads", "2"), 10);

const llama = await getLlama({ gpu: false, build: "never", logLevel: LlamaLogLevel.error });
const model = await llama.loadModel({ modelPath });
let prompt;
if (opt("--tokens")) {
  prompt = opt("--tokens").split(",").map((s) => parseInt(s, 10));
} else {
  prompt = Array.from(model.tokenize(opt("--text", ""), true));
  if (model.tokens.shouldPrependBosToken && model.tokens.bos != null)
    prompt.unshift(model.tokens.bos);
}

const size = prompt.length + nGen + 8;
const context = await model.createContext({
  contextSize: Math.max(256, size),
  batchSize: Math.max(256, size),
  threads,
});
const seq = context.getSequence();
const step = { generateNext: { token: true, logits: true, options: { temperature: 0 } } };

const top2 = (logits) => {
  let a = -1, b = -1, la = -Infinity, lb = -Infinity;
  for (const [id, l] of logits.entries()) {
    if (l > la || (l === la && id < a)) {
      b = a; lb = la; a = id; la = l;
    } else if (l > lb || (l === lb && id < b)) {
      b = id; lb = l;
    }
  }
  return [a, la, b, lb];
};

const tokens = [];
const tops = [];
let input = prompt.map((t, i) => (i === prompt.length - 1 ? [t, step] : t));
for (let g = 0; g < nGen; g++) {
  const res = await seq.controlledEvaluate(input);
  const r = res[input.length - 1];
  if (!r || !r.next || r.next.token == null || !r.next.logits) throw new Error(`step ${g}: no token`);
  const t = r.next.token;
  const t2 = top2(r.next.logits);
  if (t2[0] !== t && t2[1] !== r.next.logits.get(t))
    throw new Error(`step ${g}: llama.cpp's greedy token ${t} is not the argmax ${t2[0]}`);
  tokens.push(t);
  tops.push(t2);
  if (model.isEogToken(t)) break;
  input = [[t, step]];
}
const body = tokens.length && model.isEogToken(tokens[tokens.length - 1]) ? tokens.slice(0, -1) : tokens;
const text = model.detokenize(body, false);
const num = (x) => Number(x.toPrecision(9));
console.log(
  JSON.stringify({
    prompt_tokens: prompt,
    tokens,
    text,
    top2: tops.map(([a, la, b, lb]) => [a, num(la), b, num(lb)]),
  }),
);
await context.dispose();
await model.dispose();
