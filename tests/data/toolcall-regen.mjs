// Makes tests/data/toolcall-render.json: conversations with tools, tool calls
// and tool results in OpenAI's request shape, rendered through every chat
// template of tests/data/templates by the oracle (@huggingface/jinja, via the
// same Template class ../shared/oracle/template.mjs uses). test_toolcall.c
// renders each request through chat/ (chat_render) and must get the same
// text, or fail where the oracle failed.
//
// Before rendering, the messages get what chat_tool_messages (src/chat/
// toolcall.c) does for templates, written again here in a few lines so the
// oracle sees the template's own input: each tool call's `arguments` JSON
// string parsed into an object (transformers' and vLLM's convention), a
// missing `type` set to "function", an empty `tool_calls` removed. The ids
// are 9 letters and digits already, so Mistral's id mapping is the identity
// here (test_toolcall.c checks the mapping itself). As chat_render does, a
// template that fails on an assistant's null content is rendered again with
// "" for it.
//   cd /root/oracle && TZ=UTC node /work/main/tests/data/toolcall-regen.mjs
import { createRequire } from "node:module";
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
const require = createRequire(path.join(process.cwd(), "noop.js"));
const { Template } = require("@huggingface/jinja");
const here = path.dirname(fileURLToPath(import.meta.url));
const tdir = path.join(here, "templates");

const weather = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Get the current weather in a city.",
    parameters: {
      type: "object",
      properties: {
        city: { type: "string", description: "City name, e.g. \"Seoul\"" },
        unit: { type: "string", enum: ["celsius", "fahrenheit"] },
        days: { type: "array", items: { type: "integer" } },
      },
      required: ["city"],
    },
  },
};
const search = {
  type: "function",
  function: {
    name: "search",
    description: "Search the web.",
    parameters: { type: "object", properties: { query: { type: "string" } }, required: ["query"] },
  },
};
const call = (id, name, args) => ({ id, type: "function", function: { name, arguments: args } });

const cases = [
  {
    name: "tools-listed",
    messages: [
      { role: "system", content: "You are a weather bot." },
      { role: "user", content: "What's the weather in Seoul?" },
    ],
    tools: [weather, search],
  },
  {
    name: "one-call",
    messages: [
      { role: "system", content: "You are a weather bot." },
      { role: "user", content: "Weather in 東京 for two days?" },
      { role: "assistant", content: null,
        tool_calls: [call("abc123XYZ", "get_weather", "{\"city\": \"東京\", \"days\": [1, 2], \"opts\": {\"a\": null}}")] },
      { role: "tool", tool_call_id: "abc123XYZ", content: "{\"temperature\": 3.5, \"sky\": \"clear\"}" },
    ],
    tools: [weather, search],
  },
  {
    name: "parallel-calls",
    messages: [
      { role: "system", content: "You are a weather bot." },
      { role: "user", content: "Weather in Paris, and news about it?" },
      { role: "assistant", content: "Checking both.",
        tool_calls: [call("A1b2C3d4E", "get_weather", "{\"city\":\"Paris\"}"),
                     call("Z9y8X7w6V", "search", "{\"query\":\"Paris news \\\"today\\\"\"}")] },
      { role: "tool", tool_call_id: "A1b2C3d4E", content: "sunny" },
      { role: "tool", tool_call_id: "Z9y8X7w6V", content: "nothing new" },
      { role: "assistant", content: "Sunny, and nothing new." },
      { role: "user", content: "Thanks!" },
    ],
    tools: [weather, search],
  },
  {
    name: "object-args",
    messages: [
      { role: "system", content: "Be brief." },
      { role: "user", content: "Search for llamas." },
      { role: "assistant", content: "",
        tool_calls: [{ id: "q1w2e3r4t", function: { name: "search", arguments: { query: "llamas" } } }] },
      { role: "tool", tool_call_id: "q1w2e3r4t", content: "Llamas are camelids." },
    ],
    tools: [search],
  },
];

function prepare(messages) {
  const out = structuredClone(messages);
  for (const m of out) {
    if (m.role !== "assistant" || m.tool_calls == null) continue;
    if (m.tool_calls.length === 0) { delete m.tool_calls; continue; }
    for (const tc of m.tool_calls) {
      if (tc.type == null) tc.type = "function";
      const a = tc.function.arguments;
      if (typeof a === "string") tc.function.arguments = JSON.parse(a);
      else if (a == null) tc.function.arguments = {};
    }
  }
  return out;
}

function render(tpl, ctx) {
  try {
    return { expected: tpl.render(ctx) };
  } catch (e) {
    const nulls = ctx.messages.filter((m) => m.role === "assistant" && m.content == null);
    if (nulls.length === 0 || e.message.startsWith("raise:")) return { error: e.message };
    const again = structuredClone(ctx);
    for (const m of again.messages) if (m.role === "assistant" && m.content == null) m.content = "";
    try {
      return { expected: tpl.render(again) };
    } catch (e2) {
      return { error: e.message };
    }
  }
}

const out = [];
for (const f of fs.readdirSync(tdir).filter((f) => f.endsWith(".jinja")).sort()) {
  const tpl = new Template(fs.readFileSync(path.join(tdir, f), "utf8"));
  for (const c of cases) {
    const ctx = { messages: prepare(c.messages), tools: c.tools, add_generation_prompt: true,
                  bos_token: "<s>", eos_token: "</s>" };
    out.push({ template: f, name: c.name, request: { messages: c.messages, tools: c.tools },
               ...render(tpl, ctx) });
  }
}
fs.writeFileSync(path.join(here, "toolcall-render.json"), JSON.stringify(out, null, 1) + "\n");
console.log(`${out.length} renderings, ${out.filter((o) => o.error).length} errors`);
