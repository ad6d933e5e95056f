// format.mjs - structured output through `vitamin serve`, read by the
// official openai client, for tests/test_serve_format.c. The model has
// random weights, so the grammar does all the work: every output must parse
// and validate (ajv) against its schema, match its regex or be one of its
// choices, streamed or not, on both endpoints; bad formats are the client's
// BadRequestError with a message naming the problem. Prints one JSON object;
// a failed check exits 1 naming it.
//
// usage: VT_NODE_DIR=DIR node format.mjs BASE_URL MODEL
import { createRequire } from 'node:module';
import path from 'node:path';

const [base, model] = process.argv.slice(2);
const req = createRequire(path.join(process.env.VT_NODE_DIR, 'package.json'));
const OpenAI = req('openai');
const Ajv = req('ajv');
const addFormats = req('ajv-formats');
const client = new OpenAI({ baseURL: base + '/v1', apiKey: 'none', maxRetries: 0 });
const ajv = new Ajv({ strict: false });
addFormats(ajv);
const out = {};
const fail = (what) => { console.error('format.mjs: ' + what); process.exit(1); };
const assert = (c, what) => { if (!c) fail(what); };

const person = {
  type: 'object',
  properties: {
    name: { type: 'string', minLength: 1, maxLength: 12 },
    age: { type: 'integer', minimum: 0, maximum: 120 },
    tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
    address: { type: 'object', properties: { city: { type: 'string', maxLength: 10 } }, required: ['city'], additionalProperties: false },
  },
  required: ['name', 'age', 'address'],
  additionalProperties: false,
};
const validPerson = ajv.compile(person);
const msgs = [{ role: 'user', content: 'Describe a person as JSON.' }];

// json_schema, several seeds, non-streamed
let ok = 0;
for (let seed = 1; seed <= 12; seed++) {
  const r = await client.chat.completions.create({
    model, messages: msgs, temperature: 1, seed, max_tokens: 300,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person, strict: true } },
  });
  const c = r.choices[0];
  assert(c.finish_reason === 'stop', `seed ${seed}: finish ${c.finish_reason}: ${c.message.content}`);
  let v;
  try { v = JSON.parse(c.message.content); } catch (e) { fail(`seed ${seed}: not JSON: ${c.message.content}`); }
  assert(validPerson(v), `seed ${seed}: ${JSON.stringify(validPerson.errors)} for ${c.message.content}`);
  ok++;
}
out.json_schema_valid = ok;

// streamed: the deltas concatenate to valid JSON
{
  const s = await client.chat.completions.create({
    model, messages: msgs, temperature: 1, seed: 99, max_tokens: 300, stream: true,
    response_format: { type: 'json_schema', json_schema: { name: 'person', schema: person } },
  });
  let text = '', finish = null, chunks = 0;
  for await (const ch of s) {
    const d = ch.choices[0];
    if (!d) continue;
    if (d.delta && d.delta.content) { text += d.delta.content; chunks++; }
    if (d.finish_reason) finish = d.finish_reason;
  }
  assert(finish === 'stop' && chunks > 1, 'stream finish ' + finish + ' chunks ' + chunks);
  assert(validPerson(JSON.parse(text)), 'stream: ' + text);
  out.stream_valid = true;
}

// json_object: any JSON object
{
  const r = await client.chat.completions.create({ model, messages: msgs, temperature: 1, seed: 5, max_tokens: 200, response_format: { type: 'json_object' } });
  const t = r.choices[0].message.content;
  let v = null;
  if (r.choices[0].finish_reason === 'stop') v = JSON.parse(t);
  // an unbounded object may run to max_tokens; then it must be a prefix of one
  assert(r.choices[0].finish_reason === 'length' || (v && typeof v === 'object' && !Array.isArray(v)), 'json_object: ' + t);
  assert(t.trimStart().startsWith('{'), 'json_object starts with {: ' + t);
  out.json_object = r.choices[0].finish_reason;
}

// vLLM's extras
{
  const choices = ['yes', 'no', 'maybe not'];
  for (let seed = 1; seed <= 5; seed++) {
    const r = await client.chat.completions.create({ model, messages: msgs, temperature: 1, seed, max_tokens: 20, guided_choice: choices });
    assert(choices.includes(r.choices[0].message.content), 'guided_choice: ' + r.choices[0].message.content);
  }
  const r2 = await client.chat.completions.create({ model, messages: msgs, temperature: 1, seed: 3, max_tokens: 30, guided_regex: '[0-9]{3}-[0-9]{4}' });
  assert(/^[0-9]{3}-[0-9]{4}$/.test(r2.choices[0].message.content), 'guided_regex: ' + r2.choices[0].message.content);
  const r3 = await client.chat.completions.create({ model, messages: msgs, temperature: 1, seed: 4, max_tokens: 30, guided_grammar: 'root ::= "ab" [0-9] "!"' });
  assert(/^ab[0-9]!$/.test(r3.choices[0].message.content), 'guided_grammar: ' + r3.choices[0].message.content);
  const r4 = await client.completions.create({ model, prompt: 'JSON:', temperature: 1, seed: 6, max_tokens: 300, guided_json: person });
  assert(validPerson(JSON.parse(r4.choices[0].text)), 'completions guided_json: ' + r4.choices[0].text);
  const r5 = await client.completions.create({ model, prompt: 'JSON:', temperature: 1, seed: 7, max_tokens: 300, n: 3, response_format: { type: 'json_schema', json_schema: { name: 'p', schema: person } } });
  for (const c of r5.choices) assert(validPerson(JSON.parse(c.text)), 'completions n=3: ' + c.text);
  out.extras = true;
}

// bad formats: 400s naming the problem
async function bad(body, re, what) {
  try {
    await client.chat.completions.create({ model, messages: msgs, max_tokens: 5, ...body });
  } catch (e) {
    assert(e.status === 400 && re.test(e.message), `${what}: ${e.status} ${e.message}`);
    return e.message;
  }
  fail(what + ': accepted');
}
out.errors = [
  await bad({ response_format: { type: 'xml' } }, /response_format type 'xml'/, 'type xml'),
  await bad({ response_format: { type: 'json_schema' } }, /json_schema/, 'no json_schema'),
  await bad({ response_format: { type: 'json_schema', json_schema: { schema: person } } }, /name/, 'no name'),
  await bad({ response_format: { type: 'json_object' }, guided_regex: 'a+' }, /cannot be used together/, 'two kinds'),
  await bad({ guided_choice: [] }, /guided_choice/, 'empty choices'),
  await bad({ guided_json: '{not json' }, /guided_json/, 'bad guided_json'),
  await bad({ guided_grammar: 'root ::= (' }, /grammar|GBNF|line/i, 'bad GBNF'),
  await bad({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', contentMediaType: 'text/html' } } } }, /contentMediaType/, 'unsupported keyword'),
];
console.log(JSON.stringify(out));
