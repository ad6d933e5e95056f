// embeddings.mjs - drives `vitamin serve`'s /v1/embeddings with the official
// `openai` npm client for tests/test_serve_embed.c. Asserts (a failed one
// exits 1 naming it): shape (one vector of the model's length per input, in
// order, object/index/model/usage fields), L2 norm 1, base64 (the client's
// default, which it decodes) equal to encoding_format float bit for bit, a
// token-array input equal to its string's tokenization (from /tokenize), a
// batch of inputs equal to each input alone, different texts giving
// different vectors, and errors as the client's typed errors. Prints one
// JSON object with what it measured on stdout (the C test reads `vectors`
// for the engine-level comparison).
//
// usage: VT_NODE_DIR=DIR node embeddings.mjs BASE_URL API_KEY MODEL DIM
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [base, key, model, dimArg] = process.argv.slice(2);
const dim = Number(dimArg);
const req = createRequire(path.join(process.env.VT_NODE_DIR, 'package.json'));
const mod = await import(pathToFileURL(req.resolve('openai')).href);
const OpenAI = mod.default ?? mod.OpenAI;
const client = new OpenAI({ baseURL: base + '/v1', apiKey: key, maxRetries: 0, timeout: 60000 });
const fail = (what) => { console.error('embeddings.mjs: ' + what); process.exit(1); };
const assert = (cond, what) => { if (!cond) fail(what); };
const out = {};

const norm = (v) => Math.sqrt(v.reduce((s, x) => s + x * x, 0));
const same = (a, b) => a.length === b.length && a.every((x, i) => Object.is(x, b[i]));
const texts = ['The quick brown fox jumps over the lazy dog.', 'Hello world',
               'a', 'Embeddings pool the hidden states of every token of the input. '.repeat(6)];

// one string, float
const one = await client.embeddings.create({ model, input: texts[0], encoding_format: 'float' });
assert(one.object === 'list' && one.model === model, 'list object and model');
assert(one.data.length === 1 && one.data[0].object === 'embedding' && one.data[0].index === 0,
       'one embedding object, index 0');
assert(Array.isArray(one.data[0].embedding) && one.data[0].embedding.length === dim,
       `float vector of ${dim} numbers (got ${one.data[0].embedding?.length})`);
assert(Math.abs(norm(one.data[0].embedding) - 1) < 1e-5, 'norm 1: ' + norm(one.data[0].embedding));
const tk = await (await fetch(base + '/tokenize', {
  method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + key },
  body: JSON.stringify({ model, prompt: texts[0] }) })).json();
assert(one.usage.prompt_tokens === tk.count && one.usage.total_tokens === tk.count,
       `usage ${JSON.stringify(one.usage)} vs ${tk.count} tokens`);

// the client's default: base64, decoded by the client
const b64 = await client.embeddings.create({ model, input: texts[0] });
assert(b64.data[0].embedding.length === dim, 'base64 decodes to dim floats');
assert(same(Array.from(b64.data[0].embedding), one.data[0].embedding), 'base64 == float');
// base64 as it comes over the wire: little-endian float32
const raw = await (await fetch(base + '/v1/embeddings', {
  method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + key },
  body: JSON.stringify({ model, input: texts[0], encoding_format: 'base64' }) })).json();
const bytes = Buffer.from(raw.data[0].embedding, 'base64');
assert(bytes.length === 4 * dim, 'base64 holds dim float32');
const le = Array.from({ length: dim }, (_, i) => bytes.readFloatLE(4 * i));
assert(same(le, one.data[0].embedding), 'base64 bytes are little-endian float32 of the floats');

// a token array equals its string
const tok = await client.embeddings.create({ model, input: tk.tokens, encoding_format: 'float' });
assert(same(tok.data[0].embedding, one.data[0].embedding), 'token array == its text');
assert(tok.usage.prompt_tokens === tk.count, 'token array usage');

// a batch equals each alone, in order; lists of token arrays too
const batch = await client.embeddings.create({ model, input: texts, encoding_format: 'float' });
assert(batch.data.length === texts.length, 'one vector per input');
let total = 0;
for (let i = 0; i < texts.length; i++) {
  assert(batch.data[i].index === i, 'index ' + i);
  const alone = await client.embeddings.create({ model, input: texts[i], encoding_format: 'float' });
  assert(same(batch.data[i].embedding, alone.data[0].embedding), `batched input ${i} == alone`);
  assert(Math.abs(norm(batch.data[i].embedding) - 1) < 1e-5, 'norm 1 of input ' + i);
  total += alone.usage.prompt_tokens;
}
assert(batch.usage.prompt_tokens === total, `batch usage ${batch.usage.prompt_tokens} vs ${total}`);
assert(!same(batch.data[0].embedding, batch.data[1].embedding), 'different texts differ');
const toks2 = await client.embeddings.create({ model, input: [tk.tokens, [1, 2, 3]],
                                               encoding_format: 'float' });
assert(toks2.data.length === 2 && same(toks2.data[0].embedding, one.data[0].embedding),
       'list of token arrays');
// many at once from concurrent clients: all equal their alone vectors
const many = await Promise.all(texts.map((t) => client.embeddings.create({
  model, input: [t, t], encoding_format: 'float' })));
for (let i = 0; i < texts.length; i++)
  assert(same(many[i].data[1].embedding, batch.data[i].embedding), 'concurrent request ' + i);

async function errorName(p) {
  try { await p; return 'none'; } catch (e) {
    for (const n of ['BadRequestError', 'AuthenticationError', 'NotFoundError', 'RateLimitError'])
      if (e instanceof OpenAI[n]) return n + ':' + e.status;
    return 'other:' + e.message;
  }
}
const errs = {
  empty_string: await errorName(client.embeddings.create({ model, input: '' })),
  empty_list: await errorName(client.embeddings.create({ model, input: [] })),
  bad_token: await errorName(client.embeddings.create({ model, input: [1, 1e9] })),
  wrong_type: await errorName(client.embeddings.create({ model, input: 42 })),
  dimensions: await errorName(client.embeddings.create({ model, input: 'a', dimensions: dim - 1 })),
  format: await errorName(client.embeddings.create({ model, input: 'a', encoding_format: 'int8' })),
  too_long: await errorName(client.embeddings.create({ model, input: 'word '.repeat(5000) })),
  model: await errorName(client.embeddings.create({ model: 'no-such-model', input: 'a' })),
  key: await errorName(new OpenAI({ baseURL: base + '/v1', apiKey: 'wrong', maxRetries: 0 })
    .embeddings.create({ model, input: 'a' })),
};
const want = { empty_string: 'BadRequestError:400', empty_list: 'BadRequestError:400',
               bad_token: 'BadRequestError:400', wrong_type: 'BadRequestError:400',
               dimensions: 'BadRequestError:400', format: 'BadRequestError:400',
               too_long: 'BadRequestError:400', model: 'NotFoundError:404',
               key: 'AuthenticationError:401' };
for (const k of Object.keys(want)) assert(errs[k] === want[k], `${k}: ${errs[k]}`);
const dimsOk = await client.embeddings.create({ model, input: 'a', dimensions: dim,
                                                encoding_format: 'float' });
assert(dimsOk.data[0].embedding.length === dim, 'dimensions equal to the model\'s is fine');

const metrics = await (await fetch(base + '/metrics')).text();
const used = metrics.match(/^vitamin_kv_blocks_used (\S+)$/m);
out.kv_blocks_used = used ? Number(used[1]) : null;
out.dim = dim;
out.norm = norm(one.data[0].embedding);
out.tokens = tk.tokens;
out.vector = one.data[0].embedding;
out.errors = errs;
console.log(JSON.stringify(out));
