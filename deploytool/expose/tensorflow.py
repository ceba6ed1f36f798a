"""A TensorFlow SavedModel's serving signature, frozen (variables folded into constants and the
called functions inlined, ``convert_variables_to_constants_v2``), re-imported with
``tf.compat.v1.wrap_function`` and pruned to fetch every op output at once. Op names are those of
the inlined graph (``PartitionedCall/model/tf.nn.convolution/convolution``)."""
from __future__ import annotations

import math

from deploytool import tf_io
from deploytool.checking.localise import Limits, Node
from deploytool.expose import Exposed, Exposer, select

_SKIP = {"Const", "Placeholder", "Identity", "NoOp", "IdentityN"}  # no computation of their own


def expose(path, feeds, limits: Limits) -> Exposed:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    loaded = tf.saved_model.load(str(path))  # held: its variables die with it, and the signature needs them
    fn = loaded.signatures[tf_io.SIGNATURE]
    frozen = convert_variables_to_constants_v2(fn)
    graph_def = frozen.graph.as_graph_def()
    keys = sorted(fn.structured_input_signature[1])
    placeholders = [t.name for t in frozen.inputs]
    by_key = {k: f"{k}:0" if f"{k}:0" in placeholders else placeholders[i] for i, k in enumerate(keys)}

    def tensor(name: str) -> str:
        return name if ":" in name else f"{name}:0"

    nodes, sizes, float_out = [], {}, set()
    graph = frozen.graph
    for n in graph_def.node:
        op = graph.get_operation_by_name(n.name)
        outs = [t.name for t in op.outputs]
        nodes.append(Node(n.name, n.op, [tensor(i) for i in n.input if not i.startswith("^")], outs))
        if n.op not in _SKIP:
            for t in op.outputs:
                if t.dtype.is_floating:
                    float_out.add(t.name)
                    dims = t.shape.as_list() if t.shape.rank is not None else None
                    sizes[t.name] = None if dims is None else 4 * math.prod(d or 1 for d in dims)
    inputs = list(by_key.values())
    chosen, total = select(nodes, inputs, sizes, limits, lambda t: t in float_out)
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    g = wrapped.graph
    pruned = wrapped.prune(feeds=[g.as_graph_element(by_key[k]) for k in keys],
                           fetches=[g.as_graph_element(t) for t in chosen])
    values = pruned(*[tf.constant(feeds[k]) for k in keys])
    tensors = {t: v.numpy() for t, v in zip(chosen, values)}
    return Exposed(nodes, inputs, tensors, total, len(chosen) < total)


EXPOSER = Exposer("tensorflow", expose)
