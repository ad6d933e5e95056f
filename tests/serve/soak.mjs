// soak.mjs - a bounded soak of a running `vitamin serve` over loopback with
// the official `openai` npm client, for tests/test_soak.c: N streamed
// requests (completions and chat, short random prompts, 4-24 tokens, some
// with stop strings), CONC at a time, a third of them (chosen at random)
// cancelled by the client at a random point: before the response arrives,
// or after a random number of chunks, always before the end. Every other
// request must complete: finish_reason "length" (with exactly max_tokens
// tokens in its usage chunk) or "stop", the usage chunk last, then the
// stream's end. The same greedy request before and after the soak must give
// the same text, and /metrics must come back to no running or waiting
// request and no KV block in use. Prints one JSON object of counts; a failed
// check exits 1 naming it.
//
// usage: VT_NODE_DIR=DIR node soak.mjs BASE_URL MODEL [N [CONC [SEED]]]
//   DIR holds node_modules/openai (.ci/node in CI).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [base, model, nArg, concArg, seedArg] = process.argv.slice(2);
const N = +(nArg ?? 500), CONC = +(concArg ?? 64);
const req = createRequire(path.join(process.env.VT_NODE_DIR, 'package.json'));
const mod = await import(pathToFileURL(req.resolve('openai')).href);
const OpenAI = mod.default ?? mod.OpenAI;
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'none', maxRetries: 0, timeout: 120000 });

const fail = (what) => { console.error('soak.mjs: ' + what); process.exit(1); };
const assert = (cond, what) => { if (!cond) fail(what); };

let seed = (+(seedArg ?? 1234) >>> 0) || 1;
const rnd = () => { seed ^= seed << 13; seed >>>= 0; seed ^= seed >>> 17; seed ^= seed << 5; seed >>>= 0; return seed / 4294967296; };
const pick = (a) => a[Math.floor(rnd() * a.length)];
const words = ['the', 'cat', 'sat', 'on', 'a', 'mat', 'hello', 'world', 'story', 'river', 'seven',
               'blue', 'quick', 'fox', 'jumps', 'over', 'lazy', 'dog', 'tea', 'time', 'why', 'how'];
const sentence = () => Array.from({ length: 1 + Math.floor(rnd() * 12) }, () => pick(words)).join(' ');

async function metric(name) {
  const t = await (await fetch(base + '/metrics')).text();
  const m = t.match(new RegExp('^' + name + ' (\\S+)$', 'm'));
  return m ? Number(m[1]) : NaN;
}

async function probe() {
  const r = await client.completions.create({ model, prompt: 'Once upon a time', max_tokens: 16,
                                              temperature: 0, ignore_eos: true });
  return r.choices[0].text;
}

// the plan: exactly a third cancelled, at random places in the list
const plans = Array.from({ length: N }, (_, i) => ({ i, cancel: i < Math.floor(N / 3) }));
for (let i = N - 1; i > 0; i--) { const j = Math.floor(rnd() * (i + 1)); [plans[i], plans[j]] = [plans[j], plans[i]]; }
for (const p of plans) {
  p.chat = rnd() < 0.5;
  p.max = 4 + Math.floor(rnd() * 21);
  p.stop = !p.cancel && rnd() < 0.2 ? [pick(['e', 'a', 'o', ' the'])] : undefined;
  p.temperature = rnd() < 0.5 ? 0 : 0.8;
  // where a cancelled one stops: -1 before the response (after 0-3 ms), else after k chunks
  p.at = p.cancel ? (rnd() < 0.25 ? -1 : Math.floor(rnd() * (p.max - 1))) : Infinity;
  p.delay = rnd() * 3;
  if (p.at === -1) p.max = 24; // long enough not to end before its cancel
  p.prompt = sentence();
  p.ignoreEos = p.cancel || rnd() < 0.5; // a cancel point always comes before the end
}

const before = await probe();
const res = { n: N, conc: CONC, cancelled: 0, cancelled_before_response: 0, completed: 0,
              finish_length: 0, finish_stop: 0, tokens: 0, errors: [] };

async function one(p) {
  const ac = new AbortController();
  let timer = null, chunks = 0, finish = null, usage = null, afterUsage = 0;
  if (p.at === -1) timer = setTimeout(() => ac.abort(), p.delay);
  const body = p.chat
    ? { model, messages: [{ role: 'user', content: p.prompt }], max_tokens: p.max }
    : { model, prompt: p.prompt, max_tokens: p.max };
  Object.assign(body, { temperature: p.temperature, seed: p.i, stream: true,
                        stream_options: { include_usage: true }, ignore_eos: p.ignoreEos });
  if (p.stop) body.stop = p.stop;
  try {
    const api = p.chat ? client.chat.completions : client.completions;
    const stream = await api.create(body, { signal: ac.signal });
    for await (const c of stream) {
      if (usage) afterUsage++;
      if (c.usage) usage = c.usage;
      const ch = c.choices?.[0];
      if (!ch) continue;
      if (ch.finish_reason) finish = ch.finish_reason;
      if ((p.chat ? ch.delta?.content : ch.text) !== undefined) chunks++;
      if (chunks > p.at && !finish) { ac.abort(); break; }
    }
  } catch (e) {
    if (!ac.signal.aborted) { res.errors.push(`#${p.i}: ${e?.constructor?.name}: ${String(e?.message).slice(0, 160)}`); return; }
  } finally {
    if (timer) clearTimeout(timer);
  }
  if (ac.signal.aborted) {
    res.cancelled++;
    if (p.at === -1) res.cancelled_before_response++;
    if (!p.cancel) res.errors.push(`#${p.i}: aborted without being planned to`);
    return;
  }
  if (p.cancel) {
    // the timer came too late for one cancelled before the response: it just completed
    if (p.at !== -1) res.errors.push(`#${p.i}: planned cancel after ${p.at} chunks, ended after ${chunks}`);
  }
  res.completed++;
  if (finish === 'length') {
    res.finish_length++;
    if (usage?.completion_tokens !== p.max) res.errors.push(`#${p.i}: "length" with ${usage?.completion_tokens} of ${p.max} tokens`);
  } else if (finish === 'stop') {
    res.finish_stop++;
  } else {
    res.errors.push(`#${p.i}: finish_reason ${finish}`);
  }
  if (!usage) res.errors.push(`#${p.i}: no usage chunk`);
  else if (afterUsage) res.errors.push(`#${p.i}: ${afterUsage} chunks after the usage chunk`);
  res.tokens += usage?.completion_tokens ?? 0;
}

const t0 = performance.now();
let next = 0, inflight = 0;
res.max_inflight = 0;
await Promise.all(Array.from({ length: CONC }, async () => {
  while (next < N) {
    const p = plans[next++];
    inflight++;
    res.max_inflight = Math.max(res.max_inflight, inflight);
    await one(p);
    inflight--;
  }
}));
res.wall_s = +((performance.now() - t0) / 1000).toFixed(2);

// the server settles: nothing running or waiting, every KV block free
let running = NaN, waiting = NaN, used = NaN;
for (let i = 0; i < 200; i++) {
  [running, waiting, used] = await Promise.all(['vitamin_num_requests_running',
    'vitamin_num_requests_waiting', 'vitamin_kv_blocks_used'].map(metric));
  if (running === 0 && waiting === 0 && used === 0) break;
  await new Promise((r) => setTimeout(r, 50));
}
Object.assign(res, { running, waiting, kv_blocks_used: used,
                     kv_blocks_total: await metric('vitamin_kv_blocks_total'),
                     preemptions: await metric('vitamin_num_preemptions_total') });
const after = await probe();
res.same_after = before === after;

console.log(JSON.stringify(res));
assert(res.errors.length === 0, res.errors.length + ' bad requests, first: ' + res.errors.slice(0, 5).join(' | '));
assert(res.cancelled + res.completed === N, `${res.cancelled} cancelled + ${res.completed} completed != ${N}`);
assert(res.completed >= N - Math.floor(N / 3), 'every request not cancelled completed');
assert(running === 0 && waiting === 0, `still running ${running}, waiting ${waiting}`);
assert(used === 0, 'KV blocks still used: ' + used);
assert(res.same_after, `greedy probe before ${JSON.stringify(before)} and after ${JSON.stringify(after)} the soak`);
