// The tfjs_wasm runtime's page: TensorFlow.js and its WebAssembly backend (their UMD builds, served under /tfjs/
// and /tfjs-wasm/ from the npm install), the graph model under /artifact/ (model.json + weight shards), golden
// inputs under /feeds/. Fed and read by the signature's keys (model.json's "signature").
import {encode, fetchFeeds, timeCalls} from "/harness.mjs";

// TensorFlow's DataType names (model.json's signature) -> the dtype TensorFlow.js computes the tensor in (it has
// float32, int32 and bool only: the loader maps every other integer to int32 and float to float32)
const DTYPES = {DT_FLOAT: "float32", DT_DOUBLE: "float32", DT_HALF: "float32", DT_INT64: "int32", DT_INT32: "int32",
  DT_INT16: "int32", DT_INT8: "int32", DT_UINT8: "int32", DT_UINT16: "int32", DT_UINT32: "int32",
  DT_UINT64: "int32", DT_BOOL: "bool", DT_STRING: "str"};

let tf, model, outputKeys, execute;

function script(src) {
  return new Promise((ok, no) => {
    const s = document.createElement("script");
    s.src = src;
    s.onload = ok;
    s.onerror = () => no(new Error(`cannot load ${src}`));
    document.head.appendChild(s);
  });
}

function describe(signature) {
  const spec = ([key, t]) => ({name: key, dtype: DTYPES[t.dtype] ?? t.dtype ?? null,
    shape: t.tensorShape && !t.tensorShape.unknownRank
      ? (t.tensorShape.dim || []).map((d) => Number(d.size ?? -1) >= 0 ? Number(d.size) : null) : null});
  return {inputs: Object.entries(signature.inputs || {}).map(spec),
          outputs: Object.entries(signature.outputs || {}).map(spec), ordered: false};
}

export async function load(threads) {
  await script("/tfjs/tf.min.js");  // sets window.tf
  await script("/tfjs-wasm/tf-backend-wasm.min.js");  // adds tf.wasm and registers the "wasm" backend
  tf = window.tf;
  tf.wasm.setWasmPaths(new URL("/tfjs-wasm/", location.href).href);
  if (threads) tf.wasm.setThreadsCount(threads);  // read when the backend initialises: before setBackend
  if (!await tf.setBackend("wasm")) throw new Error("TensorFlow.js could not initialise its wasm backend");
  await tf.ready();
  model = await tf.loadGraphModel("/artifact/model.json");
  const signature = model.modelSignature;
  if (!signature || !signature.outputs) throw new Error("model.json has no signature: its I/O cannot be named");
  outputKeys = Object.keys(signature.outputs);
  execute = (feeds) => model.execute(feeds, outputKeys);
  return {threads: tf.wasm.getThreadsCount(), simd: await tf.env().getAsync("WASM_HAS_SIMD_SUPPORT"),
          version: tf.version.tfjs, isolated: crossOriginIsolated, browser: navigator.userAgent,
          describe: describe(signature)};
}

async function tensors(specs) {
  const feeds = {};
  for (const f of await fetchFeeds(specs)) feeds[f.name] = tf.tensor(f.data, f.shape, f.dtype);
  return feeds;
}

function dispose(feeds) {
  for (const t of Object.values(feeds)) t.dispose();
}

// One call: execute (sync; a graph with control flow needs executeAsync, used from then on), every output read
// back from the wasm heap as a web page would, every tensor the call made disposed.
async function call(feeds, read) {
  let got;
  try {
    got = execute(feeds);
  } catch (e) {
    if (!String(e && e.message).includes("executeAsync")) throw e;
    execute = (f) => model.executeAsync(f, outputKeys);
    got = await execute(feeds);
  }
  if (got instanceof Promise) got = await got;
  const outs = Array.isArray(got) ? got : [got];
  try {
    return outs.map((t, i) => read(outputKeys[i], t));
  } finally {
    for (const t of outs) t.dispose();
  }
}

export async function run(specs) {
  const feeds = await tensors(specs);
  try {
    return await call(feeds, (name, t) => ({name, dtype: t.dtype, shape: t.shape, data: encode(t.dataSync())}));
  } finally {
    dispose(feeds);
  }
}

export async function time(feedSets, protocol) {
  const feeds = await Promise.all(feedSets.map(tensors));
  try {
    return await timeCalls((i) => call(feeds[i % feeds.length], (name, t) => t.dataSync()), protocol);
  } finally {
    feeds.forEach(dispose);
  }
}
