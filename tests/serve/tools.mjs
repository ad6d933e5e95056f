// tools.mjs - tool calls through a running `vitamin serve`, read by the
// official `openai` npm client, for tests/test_toolcall_serve.c. The model's
// vocabulary has extra tokens that spell content and pieces of Hermes tool
// calls; `force(names)` makes the model write those tokens in that order
// (logit_bias as a ladder, repetition_penalty 100, greedy), which is first
// checked through /v1/completions. Every check is asserted here (a failed
// one exits 1 naming it); the number of checks is printed as JSON.
//
// usage: VT_NODE_DIR=DIR [VT_AJV_DIR=DIR2] node tools.mjs BASE_URL MODEL '{"content": ID, ...}' MODE
//   MODE "calls": sections 0-7 (forced text, no grammar); "mistral": a control-token
//   marker (a server with Mistral's template); "forced": section 8
//   (tool_choice required / named under the grammar, arguments checked by ajv
//   from VT_AJV_DIR, else VT_NODE_DIR).
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import path from 'node:path';

const [base, model, idsJson, mode] = process.argv.slice(2);
const ids = JSON.parse(idsJson);
const req = createRequire(path.join(process.env.VT_NODE_DIR, 'package.json'));
const mod = await import(pathToFileURL(req.resolve('openai')).href);
const OpenAI = mod.default ?? mod.OpenAI;
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'none', maxRetries: 0, timeout: 60000 });

let checks = 0;
const samples = [];
const fail = (what) => { console.error('tools.mjs: ' + what); process.exit(1); };
const check = (cond, what) => { checks++; if (!cond) fail(what); };
const eq = (a, b, what) => check(JSON.stringify(a) === JSON.stringify(b),
                                 `${what}: ${JSON.stringify(a)} != ${JSON.stringify(b)}`);

const texts = { content: 'Let me check.', tail: ' Done.' };
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city.',
    parameters: { type: 'object', properties: { city: { type: 'string' },
                  days: { type: 'array', items: { type: 'integer' } }, opts: { type: 'object' } },
                  required: ['city'] } } },
  { type: 'function', function: { name: 'search', parameters: { type: 'object',
    properties: { query: { type: 'string' } }, required: ['query'] } } },
];
const weatherArgs = { city: '東京', days: [1, 2], opts: { deep: { x: null, y: [true, -2.5e-3] } } };
const searchArgs = { query: 'é "q"' };
const messages = [{ role: 'user', content: 'Weather in Tokyo, and search for it?' }];

// The ladder: the named tokens in order, then the end token. (A token whose
// text is also in the prompt would lose its lead to the penalty: the extra
// tokens are chosen so that none is.)
function force(names, extra = {}) {
  const bias = {};
  names.forEach((n, i) => { bias[String(ids[n])] = 100 - 10 * i; });
  bias[String(ids.eos)] = 100 - 10 * names.length;
  return { model, temperature: 0, repetition_penalty: 100, logit_bias: bias,
           max_tokens: names.length + 3, ...extra };
}

async function collect(stream) {
  const chunks = [];
  for await (const c of stream) chunks.push(c);
  return chunks;
}

async function badRequest(body, param, what) {
  try {
    await client.chat.completions.create(body);
  } catch (e) {
    check(e instanceof OpenAI.BadRequestError, `${what}: ${e?.constructor?.name} ${e.message}`);
    check(e.status === 400 && e.error?.type === 'invalid_request_error', `${what}: type`);
    eq(e.error?.param ?? e.param, param, `${what}: param`);
    return;
  }
  fail(`${what}: no error`);
}

if (mode === 'calls') {
// 0. the ladder writes the chosen tokens, exactly (no parser involved)
const all = ['content', 'a1', 'a2', 'a3', 'a4', 'b', 'tail'];
{
  const c = await client.completions.create({ ...force(all), prompt: 'x' });
  const want = texts.content + '<tool_call>\n{"name": "get_weather", "arguments": {"city": "東京", ' +
    '"days": [1, 2], "opts": {"deep": {"x": null, "y": [true, -2.5e-3]}}}} \n</tool_call>' +
    '\n<tool_call>\n{"name": "search", "arguments": {"query": "é \\"q\\""}}\n</tool_call> Done.';
  eq(c.choices[0].text, want, 'the forced text');
  eq(c.choices[0].finish_reason, 'stop', 'the forced text ends with the end token');
  eq(c.usage.completion_tokens, all.length + 1, 'forced tokens');
}

function checkCalls(calls, n, what) {
  check(Array.isArray(calls) && calls.length === n, `${what}: ${n} calls`);
  const want = [['get_weather', weatherArgs], ['search', searchArgs]];
  calls.forEach((c, i) => {
    check(/^call_[A-Za-z0-9]{24}$/.test(c.id), `${what}: id ${c.id}`);
    eq(c.type, 'function', `${what}: type`);
    eq(c.function.name, want[i][0], `${what}: name ${i}`);
    check(typeof c.function.arguments === 'string', `${what}: arguments is a string`);
    eq(JSON.parse(c.function.arguments), want[i][1], `${what}: arguments ${i}`);
  });
  if (n > 1) check(new Set(calls.map((c) => c.id)).size === n, `${what}: distinct ids`);
}

// 1. content, two calls, content after them
const r1 = await client.chat.completions.create({ ...force(all), messages, tools });
{
  const m = r1.choices[0].message;
  eq(r1.choices[0].finish_reason, 'tool_calls', 'finish_reason');
  eq(m.role, 'assistant', 'role');
  eq(m.content, texts.content + 'Done.', 'content around the calls');
  eq(r1.usage.completion_tokens, all.length + 1, 'usage');
  checkCalls(m.tool_calls, 2, 'message');
}

// 2. the same, streamed: deltas in OpenAI's shape, and the client's accumulator
const chunks = await collect(await client.chat.completions.create({
  ...force(all), messages, tools, stream: true, stream_options: { include_usage: true } }));
{
  let content = '';
  const calls = [];
  let finish = null;
  for (const c of chunks) {
    const ch = c.choices[0];
    if (!ch) continue;
    if (ch.finish_reason) finish = ch.finish_reason;
    if (ch.delta?.content) content += ch.delta.content;
    for (const t of ch.delta?.tool_calls ?? []) {
      if (t.id) {
        eq(t.index, calls.length, 'a new call has the next index');
        eq(t.type, 'function', 'streamed type');
        eq(t.function.arguments, '', 'the first delta has arguments ""');
        check(typeof t.function.name === 'string', 'the first delta has the name');
        calls.push({ id: t.id, type: t.type, function: { name: t.function.name, arguments: '' } });
      } else {
        check(calls[t.index] && t.function.name === undefined, 'later deltas: arguments only');
        calls[t.index].function.arguments += t.function.arguments;
      }
    }
  }
  eq(finish, 'tool_calls', 'streamed finish_reason');
  eq(content, texts.content + 'Done.', 'streamed content');
  checkCalls(calls, 2, 'stream');
  check(chunks[chunks.length - 1].usage?.completion_tokens === all.length + 1,
        'stream usage: ' + JSON.stringify(chunks[chunks.length - 1]));
  const acc = await client.chat.completions.stream({ ...force(all), messages, tools })
    .finalChatCompletion();
  checkCalls(acc.choices[0].message.tool_calls, 2, 'the client accumulator');
  eq(acc.choices[0].finish_reason, 'tool_calls', 'the client accumulator: finish');
}

// 3. calls only: content null; parallel_tool_calls false: the first call
{
  const r = await client.chat.completions.create({ ...force(['a1', 'a2', 'a3', 'a4', 'b']),
                                                   messages, tools });
  eq(r.choices[0].message.content, null, 'calls only: content null');
  checkCalls(r.choices[0].message.tool_calls, 2, 'calls only');
  const p = await client.chat.completions.create({ ...force(['a1', 'a2', 'a3', 'a4', 'b']),
                                                   messages, tools, parallel_tool_calls: false });
  checkCalls(p.choices[0].message.tool_calls, 1, 'parallel_tool_calls false');
  const ps = await collect(await client.chat.completions.create({
    ...force(['a1', 'a2', 'a3', 'a4', 'b']), messages, tools, parallel_tool_calls: false,
    stream: true }));
  const heads = ps.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []).filter((t) => t.id);
  eq(heads.length, 1, 'parallel_tool_calls false, streamed');
}

// 4. a call to an unknown function stays content; max_tokens cuts a call: "length"
{
  const r = await client.chat.completions.create({ ...force(['bad']), messages, tools });
  eq(r.choices[0].message.content,
     '<tool_call>{"name": "unknown_fn", "arguments": {}}</tool_call>', 'unknown function: content');
  check(!r.choices[0].message.tool_calls?.length, 'unknown function: no tool_calls');
  eq(r.choices[0].finish_reason, 'stop', 'unknown function: stop');
  const cut = await client.chat.completions.create({ ...force(['a1', 'a2', 'a3', 'a4']),
                                                     max_tokens: 2, messages, tools });
  eq(cut.choices[0].finish_reason, 'length', 'cut call: length');
  check(!cut.choices[0].message.tool_calls?.length, 'cut call: no tool_calls');
}

// 5. tool_choice none: no parsing (the tools are not shown to the model)
{
  const r = await client.chat.completions.create({ ...force(['a1', 'a2', 'a3', 'a4']), messages,
                                                   tools, tool_choice: 'none' });
  check(r.choices[0].message.content.startsWith('<tool_call>'), 'tool_choice none: raw text');
  check(!r.choices[0].message.tool_calls?.length, 'tool_choice none: no calls');
  const withTools = await client.chat.completions.create({ ...force(['content']), messages, tools });
  check(withTools.usage.prompt_tokens > r.usage.prompt_tokens + 50,
        'tool_choice none: the tools are not in the prompt');
}

// 6. the next turn: the calls and their results go back through the template
{
  const turn = [...messages, r1.choices[0].message,
    { role: 'tool', tool_call_id: r1.choices[0].message.tool_calls[0].id, content: 'sunny, 3 °C' },
    { role: 'tool', tool_call_id: r1.choices[0].message.tool_calls[1].id, content: '{"hits": 0}' }];
  const r = await client.chat.completions.create({ ...force(['tail']), messages: turn, tools });
  eq(r.choices[0].message.content, texts.tail, 'next turn');
  const tok = await (await fetch(base + '/tokenize', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, messages: turn }) })).json();
  check(r.usage.prompt_tokens > tok.count, 'next turn: the tools are rendered too');
  const detok = await (await fetch(base + '/detokenize', {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model, tokens: tok.tokens }) })).json();
  check(detok.prompt.includes('<tool_call>\n{"name": "get_weather", "arguments": {"city": "東京"'),
        'next turn: the call rendered: ' + detok.prompt);
  check(detok.prompt.includes('<tool_response>\nsunny, 3 °C\n</tool_response>'),
        'next turn: the result rendered');
}

// 7. validation errors
await badRequest({ model, messages, tools, tool_choice: { type: 'function', function: { name: 'nope' } } },
                 'tool_choice', 'unknown tool_choice name');
await badRequest({ model, messages, tool_choice: 'required' }, 'tool_choice', 'required without tools');
await badRequest({ model, messages, tools: [{ type: 'function', function: { name: 'bad name' } }] },
                 'tools', 'bad tool name');
await badRequest({ model, messages, tools: [{ type: 'function', function: { name: 'f', parameters: 3 } }] },
                 'tools', 'bad parameters');
await badRequest({ model, messages: [...messages, { role: 'tool', content: 'x' }], tools },
                 'messages', 'tool message without tool_call_id');
await badRequest({ model, messages: [...messages, { role: 'assistant', content: null,
  tool_calls: [{ id: 'c', type: 'function', function: { name: 'search', arguments: '{oops' } }] }], tools },
                 'messages', 'arguments that are not JSON');
await badRequest({ model, messages, tools, parallel_tool_calls: 'yes' }, 'parallel_tool_calls',
                 'parallel_tool_calls not a boolean');
const many = Array.from({ length: 300 }, (_, i) => ({ type: 'function', function: { name: `f${i}` } }));
await badRequest({ model, messages, tools: many }, 'tools', 'too many tools');
await badRequest({ model, messages, tools: [tools[0], tools[0]] }, 'tools', 'duplicate names');
await badRequest({ model, messages, tools, tool_choice: { type: 'function' } }, 'tool_choice',
                 'tool_choice without a name');
await badRequest({ model, messages, tools: [{ type: 'retrieval' }] }, 'tools', 'not a function');
// and the server still answers
eq((await client.chat.completions.create({ ...force(['content']), messages, tools }))
  .choices[0].message.content, texts.content, 'after the bad requests');

}

// 8. forced calls on the random weights, under the grammar built from the
// tools' schemas: every one is a call whose arguments ajv accepts
if (mode === 'forced') {
  const reqAjv = createRequire(path.join(process.env.VT_AJV_DIR || process.env.VT_NODE_DIR,
                                         'package.json'));
  const Ajv = (await import(pathToFileURL(reqAjv.resolve('ajv')).href)).default;
  const ajv = new Ajv({ strict: false, allErrors: true });
  const forcedTools = [
    { type: 'function', function: { name: 'get_weather', parameters: {
      type: 'object', additionalProperties: false, required: ['city', 'unit'],
      properties: { city: { type: 'string', minLength: 1, maxLength: 12 },
                    unit: { type: 'string', enum: ['celsius', 'fahrenheit'] },
                    days: { type: 'array', items: { type: 'integer', minimum: 0, maximum: 9 },
                            maxItems: 3 },
                    alerts: { type: 'boolean' } } } } },
    { type: 'function', function: { name: 'search', parameters: {
      type: 'object', additionalProperties: false, required: ['query'],
      properties: { query: { type: 'string', maxLength: 16 },
                    limit: { type: 'integer', minimum: 1, maximum: 50 } } } } },
  ];
  const validators = Object.fromEntries(forcedTools.map((t) =>
    [t.function.name, ajv.compile(t.function.parameters)]));
  const named = { type: 'function', function: { name: 'get_weather' } };
  const n = Number(process.env.VT_TOOLS_FORCED ?? 16);
  const seen = new Set();
  for (let seed = 1; seed <= n; seed++) {
    for (const choice of [named, 'required']) {
      const r = await client.chat.completions.create({
        model, messages, tools: forcedTools, tool_choice: choice, temperature: 1, seed,
        max_tokens: 400 });
      const what = `forced (${choice === 'required' ? 'required' : 'named'}, seed ${seed})`;
      const m = r.choices[0].message;
      eq(r.choices[0].finish_reason, 'tool_calls', `${what}: finish_reason`);
      check(m.tool_calls?.length === 1, `${what}: one call: ${JSON.stringify(m)}`);
      eq(m.content, null, `${what}: content`);
      const c = m.tool_calls[0];
      if (choice !== 'required') eq(c.function.name, 'get_weather', `${what}: the named function`);
      const v = validators[c.function.name];
      check(v, `${what}: a known function`);
      let args;
      try { args = JSON.parse(c.function.arguments); } catch (e) { fail(`${what}: ${e.message}`); }
      check(v(args), `${what}: ajv: ${JSON.stringify(v.errors)} on ${c.function.arguments}`);
      seen.add(c.function.arguments);
    }
  }
  check(seen.size > n / 2, `forced calls: only ${seen.size} distinct argument texts`);
  samples.push(...[...seen].slice(0, 3));
  // streamed: the same shape
  const fs = await collect(await client.chat.completions.create({
    model, messages, tools: forcedTools, tool_choice: named, temperature: 1, seed: 99,
    max_tokens: 400, stream: true }));
  const parts = fs.flatMap((c) => c.choices[0]?.delta?.tool_calls ?? []);
  check(parts.length >= 2 && parts[0].id && parts[0].function.name === 'get_weather',
        'forced, streamed: the call head');
  check(parts.filter((t) => !t.id).length >= 3,
        `forced, streamed: the arguments come in pieces as generated (${parts.length - 1})`);
  check(parts.slice(1).every((t) => !t.id && t.index === 0), 'forced, streamed: one call');
  const args = parts.map((t) => t.function.arguments).join('');
  check(validators.get_weather(JSON.parse(args)), 'forced, streamed: ajv');
  eq(fs.map((c) => c.choices[0]?.finish_reason).filter((f) => f)[0], 'tool_calls',
     'forced, streamed: finish_reason');
  // a schema the grammar cannot follow is a 400 naming the tool
  await badRequest({ model, messages, tool_choice: 'required', tools: [{ type: 'function',
    function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'qqq' } } } } }] },
    'tools', 'a schema that cannot be followed');
}

// A server with Mistral's template: [TOOL_CALLS] is a control token of the
// vocabulary; its text must reach the parser (and stays hidden when the
// client asks to skip special tokens).
if (mode === 'mistral') {
  const r = await client.chat.completions.create({ ...force(['tc', 'm1']), messages, tools });
  eq(r.choices[0].finish_reason, 'tool_calls', 'mistral: finish_reason');
  eq(r.choices[0].message.content, null, 'mistral: content');
  check(r.choices[0].message.tool_calls?.length === 1, 'mistral: one call');
  eq(r.choices[0].message.tool_calls[0].function.name, 'search', 'mistral: name');
  eq(JSON.parse(r.choices[0].message.tool_calls[0].function.arguments), { query: 'm' },
     'mistral: arguments');
  const s = await client.chat.completions.create({ ...force(['tc', 'm1']), messages, tools,
                                                   skip_special_tokens: true });
  eq(s.choices[0].message.content, '[{"name": "search", "arguments": {"query": "m"}}]',
     'mistral, skip_special_tokens: the marker is gone, no call');
  check(!s.choices[0].message.tool_calls?.length, 'mistral, skip_special_tokens: no calls');
  const plain = await client.chat.completions.create({ ...force(['tc', 'm1']), messages });
  eq(plain.choices[0].message.content, '[{"name": "search", "arguments": {"query": "m"}}]',
     'mistral without tools: special text hidden as before');
}

if (mode !== 'calls' && mode !== 'forced' && mode !== 'mistral') fail('unknown mode ' + mode);
console.log(JSON.stringify({ checks, samples }));
