// The npm `openai` package against `kubebots serve`: one case per run, its result as JSON on stdout.
// Usage: node openai_node.cjs CASE   (NODE_PATH holds the cached node_modules; the server from
// COMPAT_BASE_URL / COMPAT_API_KEY / COMPAT_MODEL). An expected API error is reported as
// {"error": {...}}; anything else throws (non-zero exit, the stack on stderr).
"use strict";

const OpenAI = require("openai");

const client = new OpenAI({
  baseURL: process.env.COMPAT_BASE_URL,
  apiKey: process.env.COMPAT_API_KEY,
  maxRetries: 0,
  timeout: 60000,
});
const model = process.env.COMPAT_MODEL;

const WEATHER_TOOL = {
  type: "function",
  function: {
    name: "get_weather",
    description: "The current weather in a city",
    parameters: {
      type: "object",
      properties: { city: { type: "string" } },
      required: ["city"],
    },
  },
};
const CALL = 'call get_weather {"city": "Paris"}';

function toolCalls(message) {
  return (message.tool_calls || []).map((call) => ({
    id: call.id,
    type: call.type,
    name: call.function.name,
    arguments: call.function.arguments,
  }));
}

async function chat() {
  const completion = await client.chat.completions.create({
    model,
    messages: [
      { role: "system", content: "the client's own instructions" },
      { role: "user", content: "hello from node" },
    ],
  });
  const choice = completion.choices[0];
  return {
    object: completion.object,
    model: completion.model,
    content: choice.message.content,
    finish_reason: choice.finish_reason,
    usage: completion.usage,
  };
}

async function stream() {
  const chunks = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "stream to node" }],
    stream: true,
    stream_options: { include_usage: true },
  });
  let text = "";
  const finishReasons = [];
  let usage = null;
  let count = 0;
  for await (const chunk of chunks) {
    count += 1;
    if (chunk.usage) usage = chunk.usage;
    for (const choice of chunk.choices) {
      text += choice.delta.content || "";
      if (choice.finish_reason) finishReasons.push(choice.finish_reason);
    }
  }
  return { text, finish_reasons: finishReasons, usage, chunks: count };
}

async function tools() {
  const completion = await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: CALL }],
    tools: [WEATHER_TOOL],
  });
  const choice = completion.choices[0];
  return {
    finish_reason: choice.finish_reason,
    content: choice.message.content,
    tool_calls: toolCalls(choice.message),
  };
}

async function toolsStream() {
  // The SDK's own accumulator: the streamed deltas must assemble into the final message.
  const runner = client.chat.completions.stream({
    model,
    messages: [{ role: "user", content: CALL }],
    tools: [WEATHER_TOOL],
  });
  const final = await runner.finalChatCompletion();
  const choice = final.choices[0];
  return { finish_reason: choice.finish_reason, tool_calls: toolCalls(choice.message) };
}

async function toolResult() {
  const completion = await client.chat.completions.create({
    model,
    messages: [
      { role: "user", content: CALL },
      {
        role: "assistant",
        content: null,
        tool_calls: [
          {
            id: "call_node_1",
            type: "function",
            function: { name: "get_weather", arguments: '{"city": "Paris"}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_node_1", content: "sunny, 21 C" },
    ],
    tools: [WEATHER_TOOL],
  });
  const choice = completion.choices[0];
  return { finish_reason: choice.finish_reason, content: choice.message.content };
}

async function modelsRetrieve() {
  const found = await client.models.retrieve(model);
  return { id: found.id, object: found.object, owned_by: found.owned_by };
}

async function notFound() {
  await client.chat.completions.create({
    model: "default:no-such-bot",
    messages: [{ role: "user", content: "hi" }],
  });
  return { error: null };
}

async function badRequest() {
  await client.chat.completions.create({
    model,
    messages: [{ role: "user", content: "hi" }],
    temperature: 5,
  });
  return { error: null };
}

const CASES = {
  chat,
  stream,
  tools,
  tools_stream: toolsStream,
  tool_result: toolResult,
  models_retrieve: modelsRetrieve,
  not_found: notFound,
  bad_request: badRequest,
};

async function main() {
  const name = process.argv[2];
  const run = CASES[name];
  if (!run) throw new Error(`unknown case ${name}`);
  let result;
  try {
    result = await run();
  } catch (error) {
    if (!(error instanceof OpenAI.APIError)) throw error;
    result = {
      error: {
        class: error.constructor.name,
        status: error.status,
        message: error.message,
        body: error.error === undefined ? null : error.error,
        param: error.param === undefined ? null : error.param,
        type: error.type === undefined ? null : error.type,
        code: error.code === undefined ? null : error.code,
      },
    };
  }
  process.stdout.write(JSON.stringify(result) + "\n");
}

main().catch((error) => {
  process.stderr.write(`${error && error.stack ? error.stack : error}\n`);
  process.exit(1);
});
