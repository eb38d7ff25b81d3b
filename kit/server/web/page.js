// kit serve's page: one image, classified by the server over the inference protocol and
// in the page by onnxruntime-web, from the same model file and the same pixels.
// Preprocessing mirrors kit/runtime/preprocess.py (luma, antialiased resize, mean/std).

const $ = (id) => document.getElementById(id);
const state = { ort: null, models: {}, name: null, last: null, errors: [] };
window.kitPage = state; // for tests and the curious

// ---- facts from the ONNX file's own metadata (ModelProto.metadata_props, field 14) ----

function varint(bytes, pos) {
  let value = 0, scale = 1, byte;
  do {
    byte = bytes[pos++];
    value += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte & 0x80);
  return [value, pos];
}

function fields(bytes, start, end, visit) {
  let pos = start;
  while (pos < end) {
    let tag, size;
    [tag, pos] = varint(bytes, pos);
    const kind = tag & 7;
    if (kind === 0) { [, pos] = varint(bytes, pos); continue; }
    if (kind === 1) { pos += 8; continue; }
    if (kind === 5) { pos += 4; continue; }
    if (kind !== 2) throw new Error(`not an ONNX file (wire type ${kind})`);
    [size, pos] = varint(bytes, pos);
    visit(Math.floor(tag / 8), pos, pos + size);
    pos += size;
  }
}

function onnxMetadata(bytes) {
  const text = new TextDecoder();
  const props = {};
  fields(bytes, 0, bytes.length, (field, start, end) => {
    if (field !== 14) return;
    const entry = {};
    fields(bytes, start, end, (f, s, e) => { entry[f] = text.decode(bytes.subarray(s, e)); });
    props[entry[1]] = entry[2];
  });
  return props;
}

// ---- preprocessing: RGBA pixels -> normalised float32 NCHW, as kit.runtime does ----

function triangle(nIn, nOut) {
  const scale = nIn / nOut, support = Math.max(scale, 1);
  const rows = [];
  for (let i = 0; i < nOut; i++) {
    const center = (i + 0.5) * scale - 0.5;
    const w = new Float64Array(nIn);
    let sum = 0;
    for (let t = 0; t < nIn; t++) { w[t] = Math.max(0, 1 - Math.abs(t - center) / support); sum += w[t]; }
    for (let t = 0; t < nIn; t++) w[t] /= sum;
    rows.push(w);
  }
  return rows;
}

function prepare(image, facts) {
  const [c, h, w] = facts.input_shape;
  const { width: W, height: H, data } = image;
  const plane = (k) => { // one channel of the image, in [0, 255]
    const out = new Float64Array(W * H);
    for (let p = 0; p < W * H; p++) {
      const [r, g, b] = [data[4 * p], data[4 * p + 1], data[4 * p + 2]];
      out[p] = c === 1 ? 0.299 * r + 0.587 * g + 0.114 * b : [r, g, b][k];
    }
    return out;
  };
  const rows = triangle(H, h), cols = triangle(W, w);
  const x = new Float32Array(c * h * w);
  for (let k = 0; k < c; k++) {
    const src = plane(k), tmp = new Float64Array(h * W);
    for (let i = 0; i < h; i++) for (let y = 0; y < H; y++) {
      const wy = rows[i][y];
      if (wy) for (let u = 0; u < W; u++) tmp[i * W + u] += wy * src[y * W + u];
    }
    for (let i = 0; i < h; i++) for (let j = 0; j < w; j++) {
      let v = 0;
      for (let u = 0; u < W; u++) v += cols[j][u] * tmp[i * W + u];
      x[(k * h + i) * w + j] = (v / 255 - facts.mean[k]) / facts.std[k];
    }
  }
  return x;
}

// ---- the two classifiers ----

function top3(logits, facts) {
  const max = Math.max(...logits);
  const exps = Array.from(logits, (v) => Math.exp(v - max));
  const sum = exps.reduce((a, b) => a + b, 0);
  return exps.map((e, i) => ({ label: facts.class_names[i] ?? String(i), index: i, p: e / sum }))
    .sort((a, b) => b.p - a.p).slice(0, 3);
}

async function viaServer(model, x) {
  const shape = [1, ...model.facts.input_shape];
  const body = { inputs: [{ name: model.input, shape, datatype: 'FP32', data: Array.from(x) }] };
  const t0 = performance.now();
  const response = await fetch(`/v2/models/${encodeURIComponent(model.name)}/infer`, { method: 'POST', body: JSON.stringify(body) });
  const answer = await response.json();
  const ms = performance.now() - t0;
  if (!response.ok) throw new Error(`server: ${answer.error}`);
  const output = answer.outputs.find((o) => o.name === model.facts.outputs[0]);
  return { top: top3(output.data, model.facts), ms };
}

async function inPage(model, x) {
  const tensor = new state.ort.Tensor('float32', x, [1, ...model.facts.input_shape]);
  const t0 = performance.now();
  const outputs = await model.session.run({ [model.input]: tensor });
  const ms = performance.now() - t0;
  return { top: top3(outputs[model.facts.outputs[0]].data, model.facts), ms };
}

// ---- models ----

async function loadModel(name) {
  if (state.models[name]) return state.models[name];
  const meta = await (await fetch(`/v2/models/${encodeURIComponent(name)}`)).json();
  const bytes = new Uint8Array(await (await fetch(`/ui/models/${encodeURIComponent(name)}/model.onnx`)).arrayBuffer());
  const facts = JSON.parse(onnxMetadata(bytes)['kit.facts'] || 'null');
  if (!facts || !facts.class_names) throw new Error(`${name} is not a classifier with kit's facts`);
  const model = { name, facts, input: meta.inputs[0].name, session: null };
  if (state.ort) model.session = await state.ort.InferenceSession.create(bytes);
  state.models[name] = model;
  return model;
}

async function loadOrt() {
  try {
    const ort = await import('/ui/ort/ort.wasm.min.mjs');
    ort.env.wasm.wasmPaths = '/ui/ort/';
    ort.env.wasm.numThreads = 1; // threads need cross-origin isolation; one is plenty here
    state.ort = ort;
  } catch {
    say('In-page inference is off: this server has no onnxruntime-web files. Run `kit doctor --install web` and restart kit serve.', true);
  }
}

// ---- the page ----

// model names and class names come from files: text, never markup
// Labels come from a model file someone wrote: control and bidi characters are shown as
// escapes (as kit.report and the terminal show them), markup as text.
const inert = (text) => String(text).replace(
  /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g,
  (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
const asText = (text) => inert(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function say(text, bad = false) {
  $('message').textContent = text;
  $('message').className = bad ? 'bad' : '';
}

function show(id, result) {
  const box = $(id);
  box.querySelector('.top').innerHTML = result ? result.top.map((r) => `
    <div class="bar"><span class="label">${asText(r.label)}</span>
      <span class="track"><span class="fill" style="width:${(100 * r.p).toFixed(1)}%; display:block"></span></span>
      <span class="p">${(100 * r.p).toFixed(1)} %</span></div>`).join('') : '';
  const what = id === 'server' ? 'request to answer' : 'run in this page';
  box.querySelector('.ms').textContent = result ? `${result.ms.toFixed(1)} ms ${what}` : '';
}

async function classify(image) {
  const model = await loadModel(state.name);
  const x = prepare(image, model.facts);
  const [server, page] = await Promise.all([viaServer(model, x), model.session ? inPage(model, x) : null]);
  show('server', server);
  show('page', page);
  const agree = page ? server.top[0].index === page.top[0].index : null;
  $('verdict').textContent = page === null ? '' : agree
    ? `Both say ${inert(server.top[0].label)}.`
    : `They disagree: ${inert(server.top[0].label)} vs ${inert(page.top[0].label)}.`;
  $('verdict').className = agree === false ? 'bad' : '';
  state.last = { model: model.name, server, page, agree };
  document.body.dataset.done = String(Number(document.body.dataset.done || 0) + 1);
}

function run(image) {
  say('');
  classify(image).catch((err) => { state.errors.push(String(err)); say(String(err.message || err), true); });
}

const pad = $('pad'), ctx = pad.getContext('2d', { willReadFrequently: true });
function clearPad() {
  ctx.fillStyle = '#000';
  ctx.fillRect(0, 0, pad.width, pad.height);
  show('server', null); show('page', null); $('verdict').textContent = ''; say('');
}

function setUpDrawing() {
  let last = null;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
  pad.addEventListener('pointerdown', (e) => {
    if (document.body.dataset.mode !== 'digit') return; // colour models take pictures
    last = at(e); pad.setPointerCapture(e.pointerId);
  });
  pad.addEventListener('pointermove', (e) => {
    if (!last) return;
    const next = at(e);
    Object.assign(ctx, { strokeStyle: '#fff', lineWidth: 20, lineCap: 'round', lineJoin: 'round' });
    ctx.beginPath(); ctx.moveTo(...last); ctx.lineTo(...next); ctx.stroke();
    last = next;
  });
  pad.addEventListener('pointerup', () => {
    if (!last) return;
    last = null;
    run(ctx.getImageData(0, 0, pad.width, pad.height));
  });
}

async function openFile(file) {
  if (!file) return;
  let bitmap;
  try {
    if (!file.type.startsWith('image/')) throw new Error('not an image type');
    bitmap = await createImageBitmap(file, { colorSpaceConversion: 'none', premultiplyAlpha: 'none' });
  } catch {
    clearPad();
    say(`“${file.name}” is not an image this page can read (${file.type || 'unknown type'}); drop a PNG, JPEG, GIF, BMP or WebP file.`, true);
    return;
  }
  const full = new OffscreenCanvas(bitmap.width, bitmap.height).getContext('2d');
  full.drawImage(bitmap, 0, 0);
  clearPad();
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(bitmap, 0, 0, pad.width, pad.height);
  run(full.getImageData(0, 0, bitmap.width, bitmap.height));
}

function setUpFiles() {
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => { e.preventDefault(); drop.classList.add('over'); });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => { e.preventDefault(); drop.classList.remove('over'); openFile(e.dataTransfer.files[0]); });
  $('file').addEventListener('change', (e) => openFile(e.target.files[0]));
}

// The page follows the model: a drawing pad for a 1-channel model (digits), a picture to
// upload or drop for a colour one, with its size and classes said.
function adapt(model) {
  const [c, h, w] = model.facts.input_shape;
  const names = model.facts.class_names.slice(0, 8).map(inert).join(', ');
  const more = model.facts.class_names.length > 8 ? ', …' : '';
  const digit = c === 1;
  document.body.dataset.mode = digit ? 'digit' : 'picture';
  $('title').textContent = digit ? 'Draw a digit' : `Classify a picture: ${inert(model.name)}`;
  document.title = `kit: ${digit ? 'draw a digit' : 'classify a picture'}`;
  $('how').textContent = digit
    ? 'Draw with the mouse, or drop an image file on the pad.'
    : `This model takes ${c === 3 ? 'colour' : `${c}-channel`} pictures (resized to ${w}x${h}) and ` +
      `names ${model.facts.class_names.length} classes (${names}${more}): upload one, or drop it on the pad.`;
}

async function main() {
  clearPad();
  setUpDrawing();
  setUpFiles();
  $('clear').addEventListener('click', clearPad);
  const index = await (await fetch('/v2/repository/index', { method: 'POST', body: '{}' })).json();
  const names = index.map((m) => m.name);
  $('model').innerHTML = names.map((n) => `<option>${asText(n)}</option>`).join('');
  state.name = names.includes('mnist_cnn') ? 'mnist_cnn' : names[0];
  $('model').value = state.name;
  const linkReport = () => { $('report').href = `/report/${encodeURIComponent(state.name)}`; };
  linkReport();
  $('model').addEventListener('change', (e) => {
    state.name = e.target.value; linkReport(); clearPad();
    loadModel(state.name).then(adapt).catch((err) => say(String(err.message), true));
  });
  await loadOrt();
  adapt(await loadModel(state.name));
  document.body.dataset.ready = 'true';
}

main().catch((err) => { state.errors.push(String(err)); say(String(err.message || err), true); });
