// client.mjs - drives a running `vitamin serve` with the official `openai`
// npm client for tests/test_serve.c: each scenario's results go into one
// JSON object printed on stdout, which the C test checks (greedy text
// against `vitamin run`, logprobs against `vitamin logits`, ...); shape
// checks that need no outside reference are asserted here (a failed one
// exits 1 naming it).
//
// usage: VT_NODE_DIR=DIR node client.mjs BASE_URL API_KEY MODEL
//   DIR holds node_modules/openai (.ci/node in CI).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [base, key, model] = process.argv.slice(2);
const dir = process.env.VT_NODE_DIR;
const req = createRequire(path.join(dir, 'package.json'));
const mod = await import(pathToFileURL(req.resolve('openai')).href);
const OpenAI = mod.default ?? mod.OpenAI;

const client = new OpenAI({ baseURL: base + '/v1', apiKey: key, maxRetries: 0, timeout: 60000 });
const out = {};
const fail = (what) => { console.error('client.mjs: ' + what); process.exit(1); };
const assert = (cond, what) => { if (!cond) fail(what); };

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

async function errorName(p) {
  try { await p; return 'none'; } catch (e) {
    for (const n of ['BadRequestError', 'AuthenticationError', 'NotFoundError', 'RateLimitError',
                     'PermissionDeniedError', 'InternalServerError'])
      if (e instanceof OpenAI[n]) return n + ':' + e.status + ':' + (e.error?.type ?? e.type ?? '');
    return 'other:' + (e?.constructor?.name ?? '?') + ':' + e.message;
  }
}

async function metric(name) {
  const t = await (await fetch(base + '/metrics')).text();
  const m = t.match(new RegExp('^' + name + ' (\\S+)$', 'm'));
  return m ? Number(m[1]) : NaN;
}

const prompt = 'Hello world, this is';
const msgs = [{ role: 'user', content: 'Tell me a story.' }];

// models
const models = await client.models.list();
out.models = models.data.map((m) => m.id);

// completions, non-streaming and streaming, greedy
const c1 = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0,
                                             ignore_eos: true });
out.completion = { text: c1.choices[0].text, finish: c1.choices[0].finish_reason,
                   usage: c1.usage, object: c1.object };
const cs = await collect(await client.completions.create({
  model, prompt, max_tokens: 12, temperature: 0, ignore_eos: true, stream: true,
  stream_options: { include_usage: true } }));
const last = cs[cs.length - 1];
out.completion_stream = {
  text: cs.map((c) => c.choices[0]?.text ?? '').join(''),
  finish: cs.map((c) => c.choices[0]?.finish_reason).filter((f) => f)[0] ?? null,
  usage: last.usage, usage_choices: last.choices.length,
  nulls_before: cs.slice(0, -1).every((c) => c.usage === null),
};

// chat, non-streaming and streaming
const ch = await client.chat.completions.create({ model, messages: msgs, max_tokens: 10,
                                                  temperature: 0, ignore_eos: true });
out.chat = { text: ch.choices[0].message.content, role: ch.choices[0].message.role,
             finish: ch.choices[0].finish_reason, usage: ch.usage, object: ch.object };
const chs = await collect(await client.chat.completions.create({
  model, messages: msgs, max_tokens: 10, temperature: 0, ignore_eos: true, stream: true,
  stream_options: { include_usage: true } }));
out.chat_stream = {
  role: chs[0].choices[0].delta.role,
  text: chs.map((c) => c.choices[0]?.delta?.content ?? '').join(''),
  finish: chs.map((c) => c.choices[0]?.finish_reason).filter((f) => f)[0] ?? null,
  usage: chs[chs.length - 1].usage, usage_choices: chs[chs.length - 1].choices.length,
  object: chs[0].object,
};
// no include_usage: no usage chunk
const chs2 = await collect(await client.chat.completions.create({
  model, messages: msgs, max_tokens: 3, temperature: 0, stream: true }));
out.chat_stream_no_usage = chs2.every((c) => !c.usage && c.choices.length === 1);

// n = 2, seeded sampling: reproducible, both choices by index
const nreq = { model, prompt, max_tokens: 8, temperature: 1.0, seed: 1234, n: 2,
               ignore_eos: true };
const n1 = await client.completions.create(nreq), n2 = await client.completions.create(nreq);
out.n2 = { indexes: n1.choices.map((c) => c.index).sort(), texts: n1.choices.map((c) => c.text),
           again: n2.choices.sort((a, b) => a.index - b.index).map((c) => c.text),
           usage: n1.usage };
n1.choices.sort((a, b) => a.index - b.index);
out.n2.texts = n1.choices.map((c) => c.text);
const ns = await collect(await client.chat.completions.create({
  model, messages: msgs, max_tokens: 5, temperature: 1.0, seed: 7, n: 2, stream: true,
  ignore_eos: true }));
const byIndex = [0, 1].map((i) => ns.filter((c) => c.choices[0]?.index === i)
  .map((c) => c.choices[0].delta.content ?? '').join(''));
const nsRe = await client.chat.completions.create({
  model, messages: msgs, max_tokens: 5, temperature: 1.0, seed: 7, n: 2, ignore_eos: true });
out.n2_chat = { stream: byIndex,
                plain: nsRe.choices.sort((a, b) => a.index - b.index).map((c) => c.message.content) };

// stop strings: a piece of the greedy text
const g = out.completion.text;
const stop = g.slice(4, 8);
const sp = await client.completions.create({ model, prompt, max_tokens: 12, temperature: 0,
                                             ignore_eos: true, stop: [stop, 'zzzzqqq'] });
const sps = await collect(await client.completions.create({
  model, prompt, max_tokens: 12, temperature: 0, ignore_eos: true, stop: [stop], stream: true }));
out.stop = { stop, text: sp.choices[0].text, finish: sp.choices[0].finish_reason,
             stream_text: sps.map((c) => c.choices[0]?.text ?? '').join(''),
             stream_finish: sps.map((c) => c.choices[0]?.finish_reason).filter((f) => f)[0] };

// max_tokens -> length
const ml = await client.chat.completions.create({ model, messages: msgs, max_tokens: 3,
                                                  ignore_eos: true });
out.length = { finish: ml.choices[0].finish_reason, tokens: ml.usage.completion_tokens };

// logprobs: completions (top 5) on a token prompt, chat (top_logprobs 3)
const lp = await client.completions.create({ model, prompt: [1, 100, 200, 300], max_tokens: 2,
                                             temperature: 0, logprobs: 5, ignore_eos: true });
out.logprobs = lp.choices[0].logprobs;
const lpc = await client.chat.completions.create({ model, messages: msgs, max_tokens: 2,
                                                   temperature: 0, logprobs: true,
                                                   top_logprobs: 3, ignore_eos: true });
out.chat_logprobs = lpc.choices[0].logprobs;

// typed errors
out.errors = {
  bad: await errorName(client.completions.create({ model, prompt, temperature: 5 })),
  bad_chat: await errorName(client.chat.completions.create({ model, messages: [] })),
  model: await errorName(client.completions.create({ model: 'no-such-model', prompt })),
  auth: await errorName(new OpenAI({ baseURL: base + '/v1', apiKey: 'sk-wrong', maxRetries: 0 })
    .completions.create({ model, prompt })),
};

// a stream that fills --max-queue: another request gets 429; then the
// client aborts the stream and the KV blocks come back
const big = await client.completions.create({
  model, prompt: ['one', 'two', 'three'], max_tokens: 400, temperature: 0, ignore_eos: true,
  stream: true });
out.errors.rate = await errorName(client.completions.create({ model, prompt, max_tokens: 2 }));
let got = 0, t_abort = 0;
try {
  for await (const c of big) {
    if (++got === 3) { t_abort = Date.now(); big.controller.abort(); break; }
  }
} catch (e) { /* APIUserAbortError */ }
let used = NaN, running = NaN;
for (let i = 0; i < 200; i++) {
  used = await metric('vitamin_kv_blocks_used');
  running = await metric('vitamin_num_requests_running');
  if (used === 0 && running === 0) break;
  await new Promise((r) => setTimeout(r, 10));
}
out.abort = { chunks: got, kv_blocks_used: used, running, ms: Date.now() - t_abort,
              total: await metric('vitamin_kv_blocks_total') };
// and the server serves on
const after = await client.completions.create({ model, prompt, max_tokens: 2 });
out.after_abort = after.choices.length;

console.log(JSON.stringify(out));
