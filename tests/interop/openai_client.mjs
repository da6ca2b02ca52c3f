// OpenAI's own client (the `openai` npm package, installed from the npm registry
// into a scratch folder) against a real `flare serve` on an ephemeral port:
// completions, chat completions, streaming of both, the models list, batches of
// prompts x n, and OpenAI-shaped errors.
//   node tests/interop/openai_client.mjs build/flare
// Exits 77 (skipped) only when the npm registry cannot be reached.
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";

const flare = process.argv[2];
if (!flare) {
  console.error("usage: node openai_client.mjs path/to/flare");
  process.exit(2);
}

let passed = 0;
let failed = 0;
function check(cond, what, detail) {
  if (cond) {
    passed++;
  } else {
    failed++;
    console.log(`FAIL ${what}${detail === undefined ? "" : ": " + JSON.stringify(detail)}`);
  }
}

// The chat template of docs/chat_template.md, written out independently.
const END = "<|end|>";
function chatPrompt(messages) {
  let text = "";
  for (const m of messages) {
    const content = typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join("");
    text += `<|${m.role}|>\n${content}${END}\n`;
  }
  return text + "<|assistant|>\n";
}

function installOpenAI(dir) {
  writeFileSync(join(dir, "package.json"), JSON.stringify({ name: "scratch", private: true }));
  const r = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--loglevel=error", "openai"], {
    cwd: dir, encoding: "utf8", timeout: 180000,
  });
  if (r.status === 0) return createRequire(join(dir, "package.json"))("openai");
  const ping = spawnSync("npm", ["ping"], { encoding: "utf8", timeout: 60000 });
  if (r.error?.code === "ENOENT" || ping.status !== 0) {
    console.log("SKIP: the npm registry is unreachable (npm ping failed), so the openai package " +
                "cannot be installed: " + (r.stderr || String(r.error)).trim().split("\n").pop());
    process.exit(77);
  }
  throw new Error("npm install openai failed although the registry answers:\n" + r.stderr);
}

async function startServer(state) {
  const server = spawn(flare, ["serve", "--port", "0", "--state-dir", state, "--provision-delay", "0.1"],
                       { stdio: ["ignore", "pipe", "inherit"] });
  const lines = createInterface({ input: server.stdout });
  for await (const line of lines) {
    const m = line.match(/listening on (http:\/\/\S+)/);
    if (m) return { server, url: m[1], key: readFileSync(join(state, "api_key"), "utf8").trim() };
  }
  throw new Error("flare serve exited before listening");
}

async function createDeployment(url, key, id) {
  const headers = { "X-Api-Key": key, "Content-Type": "application/json" };
  const r = await fetch(`${url}/v1/accounts/local/deployments?deploymentId=${id}`, {
    method: "POST", headers,
    body: JSON.stringify({ baseModel: "accounts/local/models/tiny-gpt", minReplicaCount: 1, maxReplicaCount: 1 }),
  });
  if (r.status !== 200) throw new Error(`create deployment: ${r.status} ${await r.text()}`);
  for (let i = 0; i < 200; i++) {
    const g = await (await fetch(`${url}/v1/accounts/local/deployments/${id}`, { headers })).json();
    if (g.state === "READY") return `accounts/local/deployments/${id}`;
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error("deployment never READY");
}

async function expectError(promise, status, what) {
  try {
    await promise;
    check(false, `${what}: answered instead of failing with ${status}`);
    return null;
  } catch (e) {
    check(e.status === status, `${what}: status`, [e.status, e.message]);
    const body = e.error;
    check(body && typeof body.message === "string" && body.message.length > 0, `${what}: error.message`, body);
    for (const k of ["type", "param", "code"]) check(body && k in body, `${what}: error.${k} present`, body);
    return e;
  }
}

async function run(OpenAI, url, key) {
  const model = await createDeployment(url, key, "chat");
  const client = new OpenAI({ apiKey: key, baseURL: `${url}/inference/v1`, maxRetries: 0 });

  // models.list: OpenAI's list shape with the base models and the deployment.
  const ids = [];
  for await (const m of client.models.list()) {
    ids.push(m.id);
    check(m.object === "model" && m.owned_by === "local" && Number.isInteger(m.created), "model entry shape", m);
  }
  check(ids.includes("accounts/local/models/tiny-gpt"), "models.list has the base model", ids);
  check(ids.includes(model), "models.list has the deployment", ids);
  const one = await client.models.retrieve(model);
  check(one.id === model, "models.retrieve", one);

  // completions, plain and streamed: greedy sampling gives the same text.
  const greedy = { model, max_tokens: 12, temperature: 0 };
  const c = await client.completions.create({ ...greedy, prompt: "hello" });
  check(c.object === "text_completion" && c.choices.length === 1, "completion shape", c);
  check(typeof c.choices[0].text === "string" && ["stop", "length"].includes(c.choices[0].finish_reason),
        "completion choice", c.choices[0]);
  check(c.usage.prompt_tokens === 5 && c.usage.completion_tokens > 0, "completion usage", c.usage);
  let streamed = "";
  let finish = null;
  for await (const chunk of await client.completions.create({ ...greedy, prompt: "hello", stream: true })) {
    for (const ch of chunk.choices) {
      streamed += ch.text;
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  check(streamed === c.choices[0].text, "streamed completion equals the plain one", [streamed, c.choices[0].text]);
  check(finish === c.choices[0].finish_reason, "streamed finish_reason", finish);

  // A batch of string prompts x n: choice index = prompt_index * n + j, and
  // each prompt's choices are what that prompt alone gives.
  const prompts = ["ab", "hello", "xyz"];
  const singles = [];
  for (const p of prompts) singles.push((await client.completions.create({ ...greedy, prompt: p })).choices[0].text);
  const batch = await client.completions.create({ ...greedy, prompt: prompts, n: 2 });
  check(batch.choices.length === 6, "batch x n: 6 choices", batch.choices.length);
  batch.choices.forEach((ch, k) => {
    check(ch.index === k, "batch choice index in order", [k, ch.index]);
    check(ch.text === singles[Math.floor(ch.index / 2)], `batch choice ${k} is prompt ${Math.floor(k / 2)}'s`,
          [ch.text, singles[Math.floor(ch.index / 2)]]);
  });
  check(batch.usage.prompt_tokens === 2 * 1 + 5 + 3, "batch usage counts every prompt once", batch.usage);
  // Token-id prompts (lists of ids) batch the same way.
  const ids_batch = await client.completions.create({ ...greedy, prompt: [[97, 98], [104, 101, 108, 108, 111]], n: 2 });
  check(ids_batch.choices.map((x) => x.text).join("|") === [singles[0], singles[0], singles[1], singles[1]].join("|"),
        "token-id batch x n", ids_batch.choices.map((x) => x.text));
  // Streamed batch x n: every chunk carries the OpenAI index.
  const byIndex = {};
  for await (const chunk of await client.completions.create({ ...greedy, prompt: prompts, n: 2, stream: true })) {
    for (const ch of chunk.choices) byIndex[ch.index] = (byIndex[ch.index] ?? "") + ch.text;
  }
  check(Object.keys(byIndex).length === 6, "streamed batch: 6 indices", Object.keys(byIndex));
  for (let k = 0; k < 6; k++) check(byIndex[k] === singles[Math.floor(k / 2)], `streamed batch choice ${k}`, byIndex[k]);
  // Sampled (not greedy) batch x n: still 6 choices, indexed 0..5.
  const sampled = await client.completions.create({ model, prompt: prompts, n: 2, max_tokens: 4, seed: 7 });
  check(sampled.choices.map((x) => x.index).join() === "0,1,2,3,4,5", "sampled batch indices", sampled.choices);

  // Chat completions: the template applied as documented, so a completion
  // of the formatted prompt (stopped at the end of turn) gives the same text.
  const messages = [
    { role: "system", content: "answer briefly" },
    { role: "user", content: "2+3=" },
  ];
  const chat = await client.chat.completions.create({ ...greedy, messages, logprobs: true, top_logprobs: 2 });
  check(chat.object === "chat.completion" && chat.id.startsWith("chatcmpl-"), "chat shape", chat);
  const msg = chat.choices[0].message;
  check(msg.role === "assistant" && typeof msg.content === "string", "chat message", msg);
  const same = await client.completions.create({ ...greedy, prompt: chatPrompt(messages), stop: [END] });
  check(same.choices[0].text === msg.content, "chat = completion of the documented template", [msg.content, same.choices[0].text]);
  check(chat.usage.prompt_tokens === Buffer.byteLength(chatPrompt(messages)), "chat prompt tokens = template bytes", chat.usage);
  const lp = chat.choices[0].logprobs.content;
  check(lp.length === chat.usage.completion_tokens, "one logprob per completion token", [lp.length, chat.usage]);
  for (const t of lp) {
    check(typeof t.token === "string" && typeof t.logprob === "number" && t.logprob <= 0 && Array.isArray(t.bytes),
          "chat logprob entry", t);
    check(t.top_logprobs.length === 2 && t.top_logprobs.every((a) => typeof a.logprob === "number" && Array.isArray(a.bytes)),
          "chat top_logprobs", t.top_logprobs);
  }
  // The array-of-text-parts content form is the same text.
  const parts = await client.chat.completions.create({
    ...greedy, messages: [messages[0], { role: "user", content: [{ type: "text", text: "2+" }, { type: "text", text: "3=" }] }],
  });
  check(parts.choices[0].message.content === msg.content, "content parts = content string", parts.choices[0].message);
  // Chat with n: choices 0..n-1.
  const chatN = await client.chat.completions.create({ model, messages, n: 3, max_tokens: 4, seed: 3 });
  check(chatN.choices.map((x) => x.index).join() === "0,1,2", "chat n=3 indices", chatN.choices);

  // Streamed chat: the role first, content deltas that add up, a finish_reason.
  let content = "";
  let role = null;
  let chatFinish = null;
  let lpCount = 0;
  for await (const chunk of await client.chat.completions.create({ ...greedy, messages, stream: true, logprobs: true })) {
    check(chunk.object === "chat.completion.chunk", "chunk object", chunk.object);
    for (const ch of chunk.choices) {
      if (ch.delta.role) role = ch.delta.role;
      content += ch.delta.content ?? "";
      lpCount += ch.logprobs?.content?.length ?? 0;
      if (ch.finish_reason) chatFinish = ch.finish_reason;
    }
  }
  check(role === "assistant", "streamed chat role", role);
  check(content === msg.content, "streamed chat content equals the plain one", [content, msg.content]);
  check(chatFinish === chat.choices[0].finish_reason, "streamed chat finish_reason", chatFinish);
  check(lpCount === lp.length, "streamed chat logprobs", [lpCount, lp.length]);

  // Errors in OpenAI's shape: unknown model -> 404, bad role -> 400 naming it.
  const missing = "accounts/local/deployments/no-such-deployment";
  await expectError(client.chat.completions.create({ model: missing, messages }), 404, "chat, unknown model");
  await expectError(client.completions.create({ model: missing, prompt: "a" }), 404, "completion, unknown model");
  await expectError(client.completions.create({ model: "gpt-4o", prompt: "a" }), 404, "completion, foreign model name");
  await expectError(client.models.retrieve(missing), 404, "models.retrieve, unknown model");
  const bad = await expectError(client.chat.completions.create({ model, messages: [{ role: "wizard", content: "hi" }] }),
                                400, "chat, bad role");
  check(bad?.param === "messages[0].role" && bad?.type === "invalid_request_error", "bad role names the field", bad?.error);
  await expectError(client.chat.completions.create({ model, messages: [] }), 400, "chat, no messages");
  await expectError(client.chat.completions.create({ model, messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }] }),
                    400, "chat, image part");
  await expectError(client.completions.create({ model, prompt: ["a", 5] }), 400, "batch with a number among strings");
  const wrongKey = new OpenAI({ apiKey: "wrong", baseURL: `${url}/inference/v1`, maxRetries: 0 });
  const auth = await expectError(wrongKey.models.list(), 401, "wrong key");
  check(auth?.type === "authentication_error", "401 type", auth?.error);
}

const scratch = mkdtempSync(join(tmpdir(), "flare-openai-client-"));
let server = null;
try {
  const OpenAI = installOpenAI(scratch);
  const started = await startServer(join(scratch, "state"));
  server = started.server;
  await run(OpenAI, started.url, started.key);
} catch (e) {
  failed++;
  console.log("FAIL " + (e.stack || e));
} finally {
  if (server && server.exitCode === null) {
    server.kill("SIGINT");
    await new Promise((res) => server.once("exit", res));
  }
  rmSync(scratch, { recursive: true, force: true });
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed ? 1 : 0);
