"""TFLite on the LiteRT interpreter: ``experimental_preserve_all_tensors`` keeps every
intermediate tensor, with the default delegate (XNNPACK) off, since a delegated subgraph's
intermediates are never written back. Quantized tensors are dequantized with their own scale and
zero point."""
from __future__ import annotations

import numpy as np

from deploytool.checking.localise import Limits, Node
from deploytool.expose import Exposed, Exposer, select


def expose(path, feeds, limits: Limits) -> Exposed:
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interp = Interpreter(model_path=str(path), experimental_preserve_all_tensors=True,
                         experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    runner = interp.get_signature_runner("serving_default")
    runner(**feeds)
    details = {d["index"]: d for d in interp.get_tensor_details()}
    seen: dict[str, int] = {}
    names: dict[int, str] = {}
    for idx in sorted(details):  # a name can repeat: the later ones get #index
        name = details[idx]["name"] or f"tensor_{idx}"
        names[idx] = name if name not in seen else f"{name}#{idx}"
        seen.setdefault(name, idx)
    nodes = [Node(f"{op['op_name']}_{op['index']}", op["op_name"], [names[i] for i in op["inputs"] if i in names],
                  [names[i] for i in op["outputs"] if i in names])
             for op in interp._get_ops_details() if op["op_name"] != "DELEGATE"]
    by_name = {v: k for k, v in names.items()}
    inputs = [names[d["index"]] for d in runner.get_input_details().values()]
    sizes = {names[i]: int(np.prod(d["shape"])) * 4 for i, d in details.items()}
    chosen, total = select(nodes, inputs, sizes, limits)
    tensors = {}
    for t in chosen:
        d = details[by_name[t]]
        try:
            v = interp.get_tensor(d["index"])
        except ValueError:  # a tensor the interpreter did not keep
            continue
        scale, zero = d.get("quantization", (0.0, 0))
        if v.dtype.kind in "iu" and scale:
            v = (v.astype(np.float32) - zero) * scale
        if v.dtype.kind == "f":
            tensors[t] = np.array(v)
    return Exposed(nodes, inputs, tensors, total, len(chosen) < total)


EXPOSER = Exposer("litert", expose)
