// What every browser runtime's page shares: golden inputs fetched as typed arrays, outputs returned as base64,
// and bench's timing protocol run inside the page with performance.now() (µs resolution: the page is
// cross-origin isolated). Imported by a runtime's module as "/harness.mjs".
const ARRAYS = {float32: Float32Array, float64: Float64Array, float16: Uint16Array, int64: BigInt64Array,
  uint64: BigUint64Array, int32: Int32Array, uint32: Uint32Array, int16: Int16Array, uint16: Uint16Array,
  int8: Int8Array, uint8: Uint8Array, bool: Uint8Array};

// specs: [{name, dtype, shape, url}] -> [{name, dtype, shape, data: typed array}]
export async function fetchFeeds(specs) {
  return Promise.all(specs.map(async (s) => {
    const reply = await fetch(s.url);
    if (!reply.ok) throw new Error(`cannot fetch ${s.url}: ${reply.status}`);
    const Array_ = ARRAYS[s.dtype];
    if (!Array_) throw new Error(`unsupported input dtype ${s.dtype}`);
    return {...s, data: new Array_(await reply.arrayBuffer())};
  }));
}

export function encode(typed) {
  const bytes = new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) text += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  return btoa(text);
}

// call(i) runs feed set i % n once; p: bench's timing.Protocol. Samples in ms (fractions: µs resolution).
export async function timeCalls(call, p) {
  let i = 0;
  const warmEnd = performance.now() + p.warmup_time * 1000;
  while (i < p.warmup_runs || performance.now() < warmEnd) await call(i++);
  const warmup = i, samples = [], start = performance.now();
  let capped;
  for (;;) {
    const t0 = performance.now();
    await call(i++);
    const t1 = performance.now();
    samples.push(t1 - t0);
    const elapsed = (t1 - start) / 1000;
    if (samples.length >= p.max_runs || elapsed >= p.max_time) { capped = true; break; }
    if (samples.length >= p.min_runs && elapsed >= p.min_time) { capped = false; break; }
  }
  return {samples_ms: samples, warmup_runs: warmup, measure_s: (performance.now() - start) / 1000, capped};
}
