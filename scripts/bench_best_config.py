"""Each runtime as deploytool makes and loads the artifact vs the best configuration of that runtime found.

    python scripts/bench_best_config.py [--models mobilenet_v2,tiny_transformer] [--threads 1,2]
                                        [--rounds 3] [--min-time 2] [--bundles DIR]
    python scripts/bench_best_config.py --paired [--rounds 3] [--paired-rounds 30] [--round-s 0.25] ...

For every (model, runtime, threads) the artifact deploytool exported is timed in several
configurations: ``exported`` is exactly what ``deploytool bench`` runs (the runtime file in
deploytool/runtimes/ loads it with the artifact's load_settings from the manifest and calls it
through the same run function, on the same golden feeds); the others are documented options of
the same runtime on the same file (below). Each does the same work as deploytool's call: numpy
arrays in, numpy arrays out (``tf_feeds`` alone skips part of it, as a floor).

Default mode: each configuration in a fresh process. Rounds are interleaved (the order rotates
each round), each run reports its p50 after the same warm-up and minimum runs/time, and the
process's CPU time per call. The table gives each configuration's median p50 over rounds and
``exported / best`` (target <= 1.05 at 1 thread), where best is the fastest configuration other
than ``exported`` that does the same work (not a floor), and the same ratio on CPU time per call
(steadier on a shared machine).

``--paired``: every configuration of a runtime loaded in one process and timed in many short
interleaved rounds (``--paired-rounds`` of ``--round-s`` each, order rotated), ``--rounds`` such
processes. Fresh processes of one configuration differ by several per cent on this machine (where
the weights land, what else ran that second), more than the differences being measured; pairing
round by round takes that out. Per process the ratio exported/config is the median of the
per-round ratios; the table gives its median over processes, per configuration, and names the one
exported compares worst against.

Configurations (besides ``exported``):
- torchscript: ``plain`` (torch.jit.load, no optimize_for_inference), ``optimized`` (always
  optimize_for_inference, whatever the manifest says), ``no_grad`` (optimized, called under
  torch.no_grad instead of inference_mode). (``torch.jit.enable_onednn_fusion(True)`` was tried
  too: it fails on mobilenet_v2 in torch 2.13, "vector::_M_range_check".)
- onnxruntime: ``no_spinning`` (intra-op spinning off; on, onnxruntime's default, is what
  deploytool uses and every other configuration here), ``offline_opt`` (the graph optimized once
  with ORT_ENABLE_ALL and saved, then loaded with optimizations off: what an offline-optimized /
  ORT-format deployment loads), ``io_binding`` (outputs bound to preallocated CPU buffers).
- tensorflow: ``frozen_graph`` (the serving signature with variables folded into constants,
  convert_variables_to_constants_v2: TensorFlow's inference conversion; fed like ``exported``),
  ``tf_constant`` (the signature fed a fresh tf.constant per input per call: how deploytool fed it
  before tf_io.Feeder), ``tf_feeds`` (feeds converted to tensors once, outside the timed call: a
  floor, doing less work than any numpy-in call can).
- litert: ``invoke`` (set_tensor / invoke / get_tensor on preallocated buffers instead of the
  signature runner). XNNPACK stays on (it is LiteRT's fast CPU path for float models).

Exports the models first (all formats) when no --bundles directory is given.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _common import add_markdown_option, md_table, time_calls, write_markdown

FORMAT_OF = {"torchscript": "torchscript", "onnxruntime": "onnx", "tensorflow": "savedmodel", "litert": "tflite_fp32"}
CONFIGS = {"torchscript": ["exported", "plain", "optimized", "no_grad"],
           "onnxruntime": ["exported", "no_spinning", "offline_opt", "io_binding"],
           "tensorflow": ["exported", "frozen_graph", "tf_constant", "tf_feeds"],
           "litert": ["exported", "invoke"]}
# Configurations that do less work than a numpy-in, numpy-out call: reported, never the "best".
FLOORS = {"tf_feeds"}


# ---------------------------------------------------------------- child: one configuration, one process
def _feeds(bundle: Path, manifest: dict, fmt: str) -> tuple[list[dict], dict]:
    from deploytool.core import buffers, npz
    from deploytool.core import contract as C

    rec = manifest["artifacts"][fmt]
    contract = C.Contract.from_dict(rec["contract"])
    inputs = npz.load(bundle / manifest["golden"]["sets"]["main"]["inputs"])
    n = len(next(iter(inputs.values())))
    # As deploytool bench makes them (worker._batched_feeds): 64-byte-aligned arrays, for every configuration.
    return [{k: buffers.aligned(v) for k, v in C.to_artifact(contract, {k: v[i] for k, v in inputs.items()}).items()}
            for i in range(n)], rec


def _exported(runtime: str, bundle: Path, path: Path, threads: int):
    from deploytool.runtimes import RUNTIMES
    from deploytool.store import manifest

    rt = RUNTIMES[runtime]
    load_settings = manifest.read(bundle).artifacts[FORMAT_OF[runtime]].load_settings()
    # The settings deploytool bench passes (commands/bench.py _run_row) plus the artifact's own.
    session = rt.load(path, {"threads": threads, "inter_op_threads": 1, "spinning": True, **load_settings})
    return lambda f: rt.run(session, f)


def _torchscript(config: str, path: Path, threads: int):
    import torch

    torch.set_num_threads(threads)
    if torch.get_num_interop_threads() != 1:  # set once per process (--paired loads every configuration in one)
        torch.set_num_interop_threads(1)
    module = torch.jit.load(str(path), map_location="cpu").eval()
    if config != "plain":
        module = torch.jit.optimize_for_inference(module)
    ctx = torch.no_grad if config == "no_grad" else torch.inference_mode

    def call(f):  # numpy in, numpy out, as every runtime's call here (and deploytool's) does
        with ctx():
            out = module(*[torch.from_numpy(v) for v in f.values()])
        return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]
    return call


def _onnxruntime(config: str, path: Path, threads: int, work: Path):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0" if config == "no_spinning" else "1")
    if config == "offline_opt":
        pre = ort.SessionOptions()
        pre.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        pre.optimized_model_filepath = str(work / "offline.onnx")
        ort.InferenceSession(str(path), sess_options=pre, providers=["CPUExecutionProvider"])
        path = work / "offline.onnx"
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    if config != "io_binding":
        return lambda f: sess.run(names, f)
    binding = sess.io_binding()
    for n in names:
        binding.bind_output(n, "cpu")

    def call(f):
        for k, v in f.items():
            binding.bind_cpu_input(k, v)
        sess.run_with_iobinding(binding)
        return binding.copy_outputs_to_cpu()
    return call


def _tensorflow(config: str, path: Path, threads: int, feeds: list[dict]):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    model = tf.saved_model.load(str(path))  # kept referenced: the signature uses its variables
    fn = model.signatures["serving_default"]
    if config == "frozen_graph":
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        from deploytool.tf_io import Feeder

        frozen, feeder = convert_variables_to_constants_v2(fn), Feeder()
        order = [t.name.split(":")[0] for t in frozen.inputs]
        keys = list(fn.structured_input_signature[1])
        by_name = {spec.name: k for k, spec in fn.structured_input_signature[1].items()}
        args = [by_name.get(n, n) for n in order] if all(n in by_name for n in order) else keys

        def call(f, _keep=model):
            tensors = feeder.tensors(f)  # the same input path as deploytool's: only the graph differs
            return [feeder.detach(o.numpy()) for o in frozen(*[tensors[k] for k in args])]
        return call
    if config == "tf_constant":
        return lambda f, _keep=model: {k: v.numpy() for k, v in fn(**{k: tf.constant(v) for k, v in f.items()}).items()}
    if config == "tf_feeds":
        cache = {id(f): {k: tf.constant(v) for k, v in f.items()} for f in feeds}
        return lambda f, _keep=model: {k: v.numpy() for k, v in fn(**cache[id(f)]).items()}
    raise ValueError(config)


def _litert(config: str, path: Path, threads: int):
    from ai_edge_litert.interpreter import Interpreter

    interp = Interpreter(model_path=str(path), num_threads=threads)
    interp.allocate_tensors()
    runner = interp.get_signature_runner("serving_default")  # its tensor indices, by signature name
    index_of = {k: d["index"] for k, d in runner.get_input_details().items()}
    outs = [d["index"] for d in runner.get_output_details().values()]

    shapes: dict = {}

    def call(f):
        if any(shapes.get(k) != v.shape for k, v in f.items()):  # dynamic dims: resize once per shape
            for k, v in f.items():
                interp.resize_tensor_input(index_of[k], v.shape)
                shapes[k] = v.shape
            interp.allocate_tensors()
        for k, v in f.items():
            interp.set_tensor(index_of[k], v)
        interp.invoke()
        return [interp.get_tensor(i) for i in outs]
    return call


def _make(runtime: str, config: str, bundle: Path, path: Path, threads: int, feeds: list[dict]):
    if config == "exported":
        return _exported(runtime, bundle, path, threads)
    if runtime == "torchscript":
        return _torchscript(config, path, threads)
    if runtime == "onnxruntime":
        return _onnxruntime(config, path, threads, Path(tempfile.mkdtemp(prefix="best-config-")))
    if runtime == "tensorflow":
        return _tensorflow(config, path, threads, feeds)
    return _litert(config, path, threads)


def child(runtime: str, config: str, bundle: Path, threads: int, min_time: float, min_runs: int) -> dict:
    manifest = json.loads((bundle / "manifest.json").read_text())
    feeds, rec = _feeds(bundle, manifest, FORMAT_OF[runtime])
    t0 = time.perf_counter()
    call = _make(runtime, config, bundle, bundle / rec["path"], threads, feeds)
    load_ms = (time.perf_counter() - t0) * 1e3
    # CPU time of the whole process per call: on a shared, oversubscribed machine it moves far less
    # than wall time (waiting for a core is not counted), so configurations compare on it too.
    samples, cpu_ms = time_calls(call, feeds, min_runs, min_time)
    return {"p50_ms": float(np.percentile(np.asarray(samples) / 1e6, 50, method="linear")), "n": len(samples),
            "load_ms": load_ms, "cpu_ms": cpu_ms}


def child_paired(runtime: str, bundle: Path, threads: int, rounds: int, round_s: float) -> dict:
    """Every configuration of ``runtime`` loaded in this one process, then timed in ``rounds`` short
    interleaved rounds (order rotated): {config: [per-call ms of each round]}. Pairing the
    configurations round by round takes out what differs between fresh processes (where the
    weights landed in memory, what else ran on the machine that second)."""
    manifest = json.loads((bundle / "manifest.json").read_text())
    feeds, rec = _feeds(bundle, manifest, FORMAT_OF[runtime])
    calls = {c: _make(runtime, c, bundle, bundle / rec["path"], threads, feeds) for c in CONFIGS[runtime]}
    for call in calls.values():
        time_calls(call, feeds, 10, 0.0)  # the warm-up rule; the 10 timed calls are dropped
    per_round: dict[str, list[float]] = {c: [] for c in calls}
    order = list(calls)
    for r in range(rounds):
        for c in order[r % len(order):] + order[:r % len(order)]:
            i, t0 = 0, time.perf_counter()
            while i < 3 or time.perf_counter() - t0 < round_s:
                calls[c](feeds[i % len(feeds)])
                i += 1
            per_round[c].append((time.perf_counter() - t0) / i * 1e3)
    return per_round


# ---------------------------------------------------------------- parent: interleaved rounds
def _spawn(flag: str, *argv) -> dict:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.run([sys.executable, __file__, flag, *map(str, argv)], capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        return {"error": (proc.stderr.strip().splitlines() or ["failed"])[-1][:200]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def run_child(runtime: str, config: str, bundle: Path, threads: int, min_time: float, min_runs: int) -> dict:
    return _spawn("--child", runtime, config, bundle, threads, min_time, min_runs)


def paired(args, models: list[str], runtimes: list[str], threads: list[int], root: Path) -> list[dict]:
    """--paired: ``--rounds`` fresh processes per (model, runtime, threads), each timing every
    configuration in ``--paired-rounds`` interleaved in-process rounds. Per process, the ratio
    exported/config is the median of the per-round ratios; the table gives the median over processes."""
    results: dict[tuple, list[dict]] = {}
    for r in range(args.rounds):
        for m in models:
            for rt in runtimes:
                for t in threads:
                    res = _spawn("--child-paired", rt, root / m, t, args.paired_rounds, args.round_s)
                    results.setdefault((m, rt, t), []).append(res)
                    shown = res.get("error") or ", ".join(f"{c} {statistics.median(v):.3f}" for c, v in res.items())
                    print(f"process {r + 1} {m:<16} {rt:<12} thr {t} median ms per call: {shown}", flush=True)
    print("\nmodel             runtime      thr  exported_ms  worst-for-exported  exported/config (median of "
          "paired ratios, per config; the worst one not a floor is exported/best)")
    table = []
    for (m, rt, t), runs in results.items():
        runs = [x for x in runs if "error" not in x]
        if not runs:
            print(f"{m:<17} {rt:<12} {t:<4} failed")
            continue
        ratios = {c: statistics.median(statistics.median(e / v for e, v in zip(x["exported"], x[c])) for x in runs)
                  for c in CONFIGS[rt] if c != "exported"}
        ms = {c: statistics.median(statistics.median(x[c]) for x in runs) for c in CONFIGS[rt]}
        best = max((c for c in ratios if c not in FLOORS), key=lambda c: ratios[c])
        detail = ", ".join(f"{c}{' (floor)' if c in FLOORS else ''} {v:.3f}" for c, v in ratios.items())
        print(f"{m:<17} {rt:<12} {t:<4} {ms['exported']:<12.3f} {best:<19} {detail}")
        table.append({"model": m, "runtime": rt, "threads": t, "exported_ms": ms["exported"], "best": best,
                      "ratio": ratios[best], "ratios": ratios, "median_ms": ms, "processes": len(runs)})
    return table


def _markdown(table: list[dict], paired: bool) -> str:
    """The summary table as Markdown: exported ms and exported / each configuration (> 1: that one is faster)."""
    rows = []
    for x in table:
        ratios = x["ratios"] if paired else {c: x["exported_ms"] / v for c, v in x["median_p50_ms"].items()
                                             if c != "exported"}
        detail = ", ".join(f"{c}{' (floor)' if c in FLOORS else ''} {v:.2f}" for c, v in ratios.items())
        rows.append([x["model"], x["runtime"], x["threads"], f"{x['exported_ms']:.3f}", detail,
                     f"**{x['ratio']:.2f}**"])
    how = "paired in one process, median of per-round ratios" if paired else "fresh processes, median p50s"
    return f"exported / each configuration ({how}; > 1: the configuration is faster):\n\n" + md_table(
        ["model", "runtime", "thr", "exported ms", "exported / each configuration", "exported / best"], rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="mobilenet_v2,tiny_transformer")
    ap.add_argument("--runtimes", default=",".join(CONFIGS))
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-time", type=float, default=2.0)
    ap.add_argument("--min-runs", type=int, default=100)
    ap.add_argument("--bundles", type=Path, help="a directory with MODEL/ bundles (default: export them)")
    ap.add_argument("--json", type=Path, help="write every run's figures here")
    add_markdown_option(ap)
    ap.add_argument("--paired", action="store_true",
                    help="time every configuration in one process, in short interleaved rounds (--rounds processes)")
    ap.add_argument("--paired-rounds", type=int, default=30, help="in-process rounds per process (--paired)")
    ap.add_argument("--round-s", type=float, default=0.25, help="seconds per configuration per round (--paired)")
    ap.add_argument("--child", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--child-paired", nargs=5, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        rt, config, bundle, threads, min_time, min_runs = args.child
        print(json.dumps(child(rt, config, Path(bundle), int(threads), float(min_time), int(min_runs))))
        return
    if args.child_paired:
        rt, bundle, threads, rounds, round_s = args.child_paired
        print(json.dumps(child_paired(rt, Path(bundle), int(threads), int(rounds), float(round_s))))
        return
    models, threads = args.models.split(","), [int(t) for t in args.threads.split(",")]
    runtimes = args.runtimes.split(",")
    root = args.bundles or Path(tempfile.mkdtemp(prefix="bench-best-config-"))
    for m in models:
        if not (root / m / "manifest.json").exists():
            subprocess.run([sys.executable, "-m", "deploytool", "export", "--model", m, "--out", str(root)],
                           check=True, stdout=subprocess.DEVNULL)
    if args.paired:
        table = paired(args, models, runtimes, threads, root)
        write_markdown(ap, args, _markdown(table, paired=True))
        if args.json:
            args.json.write_text(json.dumps({"mode": "paired", "table": table}, indent=1))
        return
    results: dict[tuple, dict[str, list[dict]]] = {}
    for r in range(args.rounds):
        for m in models:
            for rt in runtimes:
                for t in threads:
                    configs = CONFIGS[rt]
                    shift = r % len(configs)
                    for config in configs[shift:] + configs[:shift]:
                        res = run_child(rt, config, root / m, t, args.min_time, args.min_runs)
                        results.setdefault((m, rt, t), {}).setdefault(config, []).append(res)
                        shown = f"p50 {res['p50_ms']:.3f} ms, cpu {res['cpu_ms']:.3f} ms/call" if "p50_ms" in res \
                            else res["error"]
                        print(f"round {r + 1} {m:<16} {rt:<12} thr {t} {config:<14} {shown}", flush=True)
    print("\nmodel             runtime      thr  exported_ms  best config     best_ms  exported/best  "
          "cpu: exported/best  all configs (median p50 ms; cpu ms/call; load ms)")
    table = []
    for (m, rt, t), per in results.items():
        med = {c: statistics.median(x["p50_ms"] for x in runs) for c, runs in per.items()
               if all("p50_ms" in x for x in runs)}
        load = {c: statistics.median(x["load_ms"] for x in runs) for c, runs in per.items() if c in med}
        cpu = {c: statistics.median(x["cpu_ms"] for x in runs) for c, runs in per.items() if c in med}
        others = {c: v for c, v in med.items() if c != "exported" and c not in FLOORS}
        if "exported" not in med or not others:
            print(f"{m:<17} {rt:<12} {t:<4} incomplete: {per}")
            continue
        best = min(others, key=lambda c: others[c])
        ratio = med["exported"] / others[best]
        cpu_best = min(v for c, v in cpu.items() if c != "exported" and c not in FLOORS)
        detail = ", ".join(f"{c} {v:.3f}; {cpu[c]:.3f}; {load[c]:.0f}" for c, v in med.items())
        print(f"{m:<17} {rt:<12} {t:<4} {med['exported']:<12.3f} {best:<15} {others[best]:<8.3f} {ratio:<14.3f} "
              f"{cpu['exported'] / cpu_best:<19.3f} {detail}")
        table.append({"model": m, "runtime": rt, "threads": t, "exported_ms": med["exported"], "best": best,
                      "best_ms": others[best], "ratio": ratio, "cpu_ratio": cpu["exported"] / cpu_best,
                      "median_p50_ms": med, "median_cpu_ms": cpu, "median_load_ms": load})
    write_markdown(ap, args, _markdown(table, paired=False))
    if args.json:
        args.json.write_text(json.dumps({"table": table, "runs": {"/".join(map(str, k)): v
                                                                  for k, v in results.items()}}, indent=1))


if __name__ == "__main__":
    main()
