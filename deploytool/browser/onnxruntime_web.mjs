// The onnxruntime_web runtime's page: onnxruntime-web's WebAssembly backend (served under /ort/ from the npm
// install), the artifact at /artifact, golden inputs under /feeds/.
import * as ort from "/ort/ort.wasm.min.mjs";
import {encode, fetchFeeds, timeCalls} from "/harness.mjs";

let session;

export async function load(threads, externalData) {
  ort.env.wasm.wasmPaths = "/ort/";
  ort.env.logLevel = "error";
  if (threads) ort.env.wasm.numThreads = threads;
  const options = {executionProviders: ["wasm"]};
  if (externalData && externalData.length) options.externalData = externalData;  // sidecars, served under /data/
  session = await ort.InferenceSession.create("/artifact", options);
  const spec = (m) => ({name: m.name, dtype: m.type, shape: (m.shape || []).map((d) => typeof d === "number" ? d : null)});
  const described = session.inputMetadata && session.outputMetadata;
  return {threads: ort.env.wasm.numThreads, simd: ort.env.wasm.simd ?? null, version: ort.env.versions.web,
          isolated: crossOriginIsolated, browser: navigator.userAgent, outputs: session.outputNames,
          describe: described ? {inputs: session.inputMetadata.map(spec), outputs: session.outputMetadata.map(spec),
                                 ordered: true} : null};
}

async function tensors(specs) {
  const feeds = {};
  for (const f of await fetchFeeds(specs)) feeds[f.name] = new ort.Tensor(f.dtype, f.data, f.shape);
  return feeds;
}

export async function run(specs) {
  const results = await session.run(await tensors(specs));
  return session.outputNames.map((name) => {
    const t = results[name];
    return {name, dtype: t.type, shape: t.dims, data: encode(t.data)};
  });
}

export async function time(feedSets, protocol) {
  const feeds = await Promise.all(feedSets.map(tensors));
  return timeCalls((i) => session.run(feeds[i % feeds.length]), protocol);
}
