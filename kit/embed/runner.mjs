// kit's Node.js runner: loads one ONNX (or ORT) file with onnxruntime-node, then answers
// batches as they come, until its stdin closes.
//
//   node runner.mjs NODE_MODULES MODEL INPUT_NAME OUT_DIR
//
// Each stdin line is {"file": PATH, "shape": [...], "id": N} (raw little-endian float32);
// each stdout line answers one: {"outputs": [{"name", "type", "dims", "file"}, ...]}, every
// output written as raw bytes into OUT_DIR, or {"error": MESSAGE}.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';

const [modules, model, inputName, outDir] = process.argv.slice(2);

function readFloat32(path) {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

async function load() {
  const ort = createRequire(join(modules, 'noop.js'))('onnxruntime-node');
  try {
    const session = await ort.InferenceSession.create(model, { executionProviders: ['cpu'] });
    return { ort, session };
  } catch (err) {
    return { error: `cannot load ${model}: ${err.message}` };
  }
}

async function answer(loaded, request) {
  if (loaded.error) return { error: loaded.error };
  const { ort, session } = loaded;
  const input = new ort.Tensor('float32', readFloat32(request.file), request.shape);
  const outputs = await session.run({ [inputName]: input });
  return {
    outputs: session.outputNames.map((name, j) => {
      const tensor = outputs[name];
      const file = join(outDir, `out-${request.id}-${j}.bin`);
      const data = tensor.data;
      writeFileSync(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return { name, type: tensor.type, dims: tensor.dims, file };
    }),
  };
}

async function main() {
  const loaded = await load();
  for await (const line of createInterface({ input: process.stdin })) {
    let reply;
    try {
      reply = await answer(loaded, JSON.parse(line));
    } catch (err) {
      reply = { error: String((err && err.message) || err) };
    }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
}

main();
