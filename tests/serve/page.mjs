// page.mjs - the chat page of a running `vitamin serve` (GET /) in a real
// browser, for tests/test_page.c: Debian's chromium, headless, driven by
// playwright-core. The server runs with an API key file, so the page first
// has to say that it needs a key; then the key is typed into its settings,
// the model's name appears, a message is typed and sent with Enter, and the
// reply must stream onto the page (its text seen at several lengths before
// the end) and end equal to the server's own non-streamed greedy answer for
// the same conversation (the page is opened with ?temperature=0 and
// max_tokens); a second turn (with a Shift+Enter newline in it) must carry
// the whole conversation; a server error must show inline; Stop must cut a long reply short and free its KV
// blocks; New chat must empty the page. No console error, no CSP violation,
// no request leaving the server. A screenshot of the two-turn conversation
// goes to SHOT (and in the dark colour scheme to SHOT-dark.png). Results are printed as one JSON object on stdout; a failed
// check exits 1 naming it.
//
// usage: VT_NODE_DIR=DIR node page.mjs BASE_URL API_KEY MODEL SHOT.png
//   DIR holds node_modules/playwright-core (.ci/node in CI);
//   VT_CHROMIUM: the browser (default /usr/bin/chromium).
import { createRequire } from 'node:module';
import path from 'node:path';

const [base, key, model, shot] = process.argv.slice(2);
const req = createRequire(path.join(process.env.VT_NODE_DIR, 'package.json'));
const { chromium } = req('playwright-core');

const MAX_TOKENS = 96;
const out = {};
let browser;
const fail = async (what) => {
  console.error('page.mjs: ' + what);
  if (browser) await browser.close().catch(() => {});
  process.exit(1);
};
const assert = async (cond, what) => { if (!cond) await fail(what); };

async function greedy(messages, max_tokens) {
  const r = await fetch(base + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', Authorization: 'Bearer ' + key },
    body: JSON.stringify({ model, messages, temperature: 0, max_tokens, memory: false }),
  });
  const j = await r.json();
  return j.choices[0].message.content;
}

async function metric(name) {
  const t = await (await fetch(base + '/metrics')).text();
  const m = t.match(new RegExp('^' + name + ' (\\S+)$', 'm'));
  return m ? Number(m[1]) : NaN;
}

// the page's own headers: HTML, and a policy that allows nothing remote or inline but its own
const head = await fetch(base + '/');
const csp = head.headers.get('content-security-policy') ?? '';
out.content_type = head.headers.get('content-type');
out.csp = csp;
await assert(out.content_type === 'text/html; charset=utf-8', 'Content-Type ' + out.content_type);
await assert(/default-src 'none'/.test(csp) && /script-src 'sha256-[^']+'(;|$)/.test(csp) &&
             /style-src 'sha256-[^']+'(;|$)/.test(csp) && /connect-src 'self'/.test(csp) &&
             !/unsafe|\*|https?:/.test(csp), 'CSP ' + csp);
const html = await head.text();
await assert(!/<script[^>]+src=|<link[^>]+stylesheet|https?:\/\//i.test(html), 'the page loads nothing');

browser = await chromium.launch({
  executablePath: process.env.VT_CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
});
const ctx = await browser.newContext({ viewport: { width: 960, height: 720 }, deviceScaleFactor: 1 });
const page = await ctx.newPage();
const problems = [], foreign = [];
page.on('console', (m) => { if (m.type() === 'error' || m.type() === 'warning') problems.push(m.type() + ': ' + m.text()); });
page.on('pageerror', (e) => problems.push('pageerror: ' + e.message));
page.on('request', (r) => { if (!r.url().startsWith(base + '/') && !r.url().startsWith('data:')) foreign.push(r.url()); });

// memory off for the turns compared with the server's own answers
await page.goto(base + '/?temperature=0&max_tokens=' + MAX_TOKENS + '&memory=0');

// no key yet: the page says so inline and opens its settings
await page.waitForSelector('#notice .error', { timeout: 20000 });
out.no_key_notice = await page.textContent('#notice');
await assert(/API key/.test(out.no_key_notice) && /401/.test(out.no_key_notice), 'no-key notice: ' + out.no_key_notice);
await assert(await page.isVisible('#key'), 'the settings (API key field) are open');

// the key typed into the settings: the model's name appears, the notice goes
await page.fill('#key', key);
await page.press('#key', 'Tab');
await page.waitForFunction((m) => document.getElementById('model').textContent === m, model, { timeout: 20000 });
out.model_shown = await page.textContent('#model');
await assert((await page.textContent('#notice')) === '', 'the notice is cleared');
await assert(!(await page.isVisible('#key')), 'the settings close once the key works');
// before the key, the browser's own log of the refused fetch is all it may say
await assert(problems.every((p) => /status of 401/.test(p)), 'console before the key: ' + problems.join(' | '));
problems.length = 0;
out.key_stored = await page.evaluate(() => localStorage.getItem('vitamin.key'));
await assert(out.key_stored === key, 'the key is kept in localStorage');

// Records the reply's text length at every change the page makes (one per
// chunk it reads off the stream), in window.__lens.
async function watchReply() {
  await page.evaluate(() => {
    window.__lens = [];
    const log = document.getElementById('log');
    const seen = () => {
      const all = log.querySelectorAll('.msg.assistant .content');
      const last = all[all.length - 1];
      const n = last ? last.textContent.length : 0;
      if (window.__lens[window.__lens.length - 1] !== n) window.__lens.push(n);
    };
    if (window.__obs) window.__obs.disconnect();
    window.__obs = new MutationObserver(seen);
    window.__obs.observe(log, { subtree: true, childList: true, characterData: true });
  });
}

async function turn(n, typeIt) {
  await watchReply();
  await page.click('#input');
  await typeIt();
  await page.press('#input', 'Enter');
  await page.waitForSelector(`.msg.assistant:nth-of-type(${2 * n})[data-state]:not([data-state="streaming"])`, { timeout: 60000 });
  const r = await page.evaluate((i) => {
    const m = document.querySelectorAll('.msg.assistant')[i];
    return { state: m.dataset.state, text: m.querySelector('.content').textContent,
             meta: m.querySelector('.meta')?.textContent ?? '', error: m.querySelector('.error')?.textContent ?? '',
             lens: window.__lens };
  }, n - 1);
  return r;
}

// turn 1: typed, Enter sends
const q1 = 'Tell me a story.';
const t1 = await turn(1, () => page.keyboard.type(q1, { delay: 5 }));
out.turn1 = t1;
await assert(t1.state === 'done', 'turn 1 state ' + t1.state + ' ' + t1.error);
const user1 = await page.textContent('.msg.user .content');
await assert(user1 === q1, 'the user message shown: ' + user1);
const ref1 = await greedy([{ role: 'user', content: q1 }], MAX_TOKENS);
out.turn1_equal = t1.text === ref1;
await assert(out.turn1_equal, `turn 1 on the page ${JSON.stringify(t1.text)} vs non-streamed ${JSON.stringify(ref1)}`);
const partial1 = new Set(t1.lens.filter((n) => n > 0 && n < t1.text.length));
out.turn1_partial_lengths = partial1.size;
await assert(partial1.size >= 2, 'the reply streamed in: lengths seen ' + JSON.stringify(t1.lens));
await assert(/\d+ tokens \(prompt \d+\)/.test(t1.meta) && /tok\/s/.test(t1.meta), 'usage line: ' + t1.meta);

// turn 2: Shift+Enter makes a newline; the reply answers the whole conversation
const q2 = 'And then?\nGo on.';
const t2 = await turn(2, async () => {
  await page.keyboard.type('And then?', { delay: 5 });
  await page.keyboard.press('Shift+Enter');
  await page.keyboard.type('Go on.', { delay: 5 });
});
out.turn2 = t2;
await assert(t2.state === 'done', 'turn 2 state ' + t2.state + ' ' + t2.error);
const users = await page.$$eval('.msg.user .content', (a) => a.map((e) => e.textContent));
await assert(users.length === 2 && users[1] === q2, 'second user message: ' + JSON.stringify(users));
const ref2 = await greedy([{ role: 'user', content: q1 }, { role: 'assistant', content: ref1 },
                           { role: 'user', content: q2 }], MAX_TOKENS);
out.turn2_equal = t2.text === ref2;
await assert(out.turn2_equal, `turn 2 on the page ${JSON.stringify(t2.text)} vs non-streamed ${JSON.stringify(ref2)}`);
const alone = await greedy([{ role: 'user', content: q2 }], MAX_TOKENS);
out.turn2_depends_on_history = alone !== ref2;

await page.screenshot({ path: shot, fullPage: false });
out.screenshot = shot;
await page.emulateMedia({ colorScheme: 'dark' });
out.screenshot_dark = shot.replace(/\.png$/, '') + '-dark.png';
await page.screenshot({ path: out.screenshot_dark, fullPage: false });
await page.emulateMedia({ colorScheme: 'light' });

// an error from the server (max tokens past the context: 400) shown inline
// under its turn; the turn leaves the conversation and its text goes back
// into the input
await page.click('#settings-btn');
await page.fill('#max-tokens', '1000000');
await page.press('#max-tokens', 'Tab');
await page.click('#settings-btn');
await page.click('#input');
await page.keyboard.type('Too long.');
await page.press('#input', 'Enter');
await page.waitForSelector('.msg.assistant:nth-of-type(6)[data-state="error"]', { timeout: 20000 });
out.error_shown = await page.textContent('.msg.assistant:nth-of-type(6) .error');
await assert(/^400: This model's maximum context length/.test(out.error_shown), 'error shown: ' + out.error_shown);
await assert((await page.inputValue('#input')) === 'Too long.', 'the text goes back into the input');
await assert(problems.every((p) => /status of 400/.test(p)), 'console at the error: ' + problems.join(' | '));
problems.length = 0;
await page.fill('#input', '');

// Stop: a long reply cut short by the button; the server frees its blocks
await page.click('#settings-btn');
await page.fill('#max-tokens', '3000');
await page.press('#max-tokens', 'Tab');
await page.click('#settings-btn');
await page.click('#input');
await page.keyboard.type('Write a long one.');
await page.press('#input', 'Enter');
await page.waitForFunction(() => {
  const a = document.querySelectorAll('.msg.assistant');
  return a.length === 4 && a[3].querySelector('.content').textContent.length > 0;
}, null, { timeout: 30000 });
await assert((await page.textContent('#send')) === 'Stop', 'the button says Stop while streaming');
await page.click('#send');
await page.waitForSelector('.msg.assistant:nth-of-type(8)[data-state="stopped"]', { timeout: 10000 });
out.stopped_meta = await page.textContent('.msg.assistant:nth-of-type(8) .meta');
await assert((await page.textContent('#send')) === 'Send', 'the button says Send again');
let used = NaN;
for (let i = 0; i < 100; i++) {
  used = await metric('vitamin_kv_blocks_used');
  if (used === 0 && (await metric('vitamin_num_requests_running')) === 0) break;
  await new Promise((r) => setTimeout(r, 100));
}
out.kv_used_after_stop = used;
await assert(used === 0, 'KV blocks used after Stop: ' + used);

// New chat: an empty page
await page.click('#new');
out.after_new = await page.$$eval('.msg', (a) => a.length);
await assert(out.after_new === 0 && (await page.isVisible('#empty')), 'New chat empties the page');

// Memory: with it on, what the user says is kept; the panel lists it with a
// delete button; deleting removes it from the server's store too
async function memories() {
  const r = await fetch(base + '/v1/memories', { headers: { Authorization: 'Bearer ' + key } });
  return (await r.json()).results.map((m) => m.memory);
}
out.memories_before = await memories();
await page.click('#settings-btn');
await page.check('#use-memory');
await page.fill('#max-tokens', '8');
await page.press('#max-tokens', 'Tab');
await page.click('#settings-btn');
const fact = 'My favourite colour is teal, like the sea at Nazaré.';
await page.click('#input');
await page.keyboard.type(fact);
await page.press('#input', 'Enter');
await page.waitForSelector('.msg.assistant:nth-of-type(2)[data-state="done"]', { timeout: 60000 });
out.memories_after_turn = await memories();
await assert(out.memories_after_turn.includes(fact), 'the turn was stored: ' + JSON.stringify(out.memories_after_turn));
await page.click('#memory-btn');
await page.waitForSelector('#memory-list li', { timeout: 20000 });
out.memory_panel = await page.$$eval('#memory-list li .text', (a) => a.map((e) => e.firstChild.textContent));
await assert(out.memory_panel.includes(fact), 'the panel lists it: ' + JSON.stringify(out.memory_panel));
// a second turn recalls it (the reply's line says so)
await page.click('#input');
await page.keyboard.type('What colour do I like?');
await page.press('#input', 'Enter');
await page.waitForSelector('.msg.assistant:nth-of-type(4)[data-state="done"]', { timeout: 60000 });
out.recall_meta = await page.textContent('.msg.assistant:nth-of-type(4) .meta');
await assert(/memor(y|ies) recalled/.test(out.recall_meta), 'recall shown: ' + out.recall_meta);
await page.waitForFunction(() => document.querySelectorAll('#memory-list li').length >= 2, null, { timeout: 20000 });
const li = page.locator('#memory-list li', { hasText: 'teal' });
await li.locator('button.delete').click();
await page.waitForFunction(() => ![...document.querySelectorAll('#memory-list li')].some((e) => e.textContent.includes('teal')), null, { timeout: 20000 });
out.memories_after_delete = await memories();
await assert(!out.memories_after_delete.includes(fact), 'deleted on the server: ' + JSON.stringify(out.memories_after_delete));
out.memory_deleted = true;
await page.screenshot({ path: shot.replace(/\.png$/, '') + '-memory.png', fullPage: false });

out.problems = problems;
out.foreign_requests = foreign;
await assert(problems.length === 0, 'console: ' + problems.join(' | '));
await assert(foreign.length === 0, 'requests elsewhere: ' + foreign.join(' '));
await browser.close();
console.log(JSON.stringify(out));
