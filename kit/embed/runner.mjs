// kit's Node.js runner: runs one ONNX (or ORT) file with onnxruntime-node on the batches
// a job file names and writes each output as raw little-endian bytes beside it.
//
//   node runner.mjs NODE_MODULES JOB.json
//
// JOB.json: {"model": PATH, "input": NAME, "batches": [{"file": PATH, "shape": [...]}],
//            "out_dir": PATH}
// It writes out_dir/result.json: {"runtime": "onnxruntime-node 1.30.0",
//   "batches": [[{"name", "type", "dims", "file"}, ...], ...]} or {"error": MESSAGE}.
import { createRequire } from 'node:module';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const [modules, jobPath] = process.argv.slice(2);
const job = JSON.parse(readFileSync(jobPath, 'utf8'));
const result = join(job.out_dir, 'result.json');

function readFloat32(path) {
  const bytes = readFileSync(path);
  return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength / 4);
}

async function main() {
  const ort = createRequire(join(modules, 'noop.js'))('onnxruntime-node');
  const runtime = `onnxruntime-node ${ort.env.versions.node}`;
  let session;
  try {
    session = await ort.InferenceSession.create(job.model, { executionProviders: ['cpu'] });
  } catch (err) {
    return { runtime, error: `cannot load ${job.model}: ${err.message}` };
  }
  const batches = [];
  for (const [i, batch] of job.batches.entries()) {
    const input = new ort.Tensor('float32', readFloat32(batch.file), batch.shape);
    const outputs = await session.run({ [job.input]: input });
    batches.push(session.outputNames.map((name, j) => {
      const tensor = outputs[name];
      const file = join(job.out_dir, `out-${i}-${j}.bin`);
      const data = tensor.data;
      writeFileSync(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return { name, type: tensor.type, dims: tensor.dims, file };
    }));
  }
  return { runtime, batches };
}

main()
  .then((answer) => writeFileSync(result, JSON.stringify(answer)))
  .catch((err) => {
    writeFileSync(result, JSON.stringify({ error: String(err && err.message || err) }));
    process.exitCode = 3;
  });
