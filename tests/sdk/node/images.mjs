// Drives a gateway with the official openai-node SDK; prints one JSON line of what it saw.
// Usage: node images.mjs BASE_URL API_KEY MODEL
import OpenAI, { toFile } from "openai";
import { readFileSync } from "node:fs";

const [baseURL, apiKey, model, imagePath] = process.argv.slice(2);
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const image = () => toFile(readFileSync(imagePath), "a.png", { type: "image/png" });
const seen = {};

const generated = await client.images.generate({ model, prompt: "a lighthouse", size: "1024x1024",
  quality: "low", response_format: "b64_json" });
seen.generate = { images: generated.data.length, b64: (generated.data[0].b64_json ?? "").length > 0 };

for (const [name, call] of [
  ["generate_stream", () => client.images.generate({ model, prompt: "a lighthouse", size: "1024x1024",
    quality: "low", stream: true, partial_images: 2 })],
  ["edit_stream", async () => client.images.edit({ model, prompt: "add a hat", image: await image(),
    size: "1024x1024", quality: "low", stream: true, partial_images: 1 })],
]) {
  const events = [];
  for await (const event of await call()) {
    events.push({ type: event.type, index: event.partial_image_index ?? null, b64: event.b64_json.length > 0,
                  usage: event.usage ?? null });
  }
  seen[name] = events;
}

try {
  await client.images.generate({ model: "dall-e-3", prompt: "x", stream: true });
  seen.refused = null;
} catch (error) {
  seen.refused = { status: error.status, param: error.param };
}
console.log(JSON.stringify(seen));
