"""The torch source in eager mode: a forward hook on every leaf module records its output, in the
order the modules run. Ops written as functions in ``forward`` (``torch.relu(x)``) have no module
and are not seen; modules run as a chain (module N's output is taken as module N+1's input), so a
later module that matches again clears the earlier ones, as in a graph."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from deploytool.checking.localise import Limits, Node
from deploytool.expose import Exposed, Exposer


def expose(path, feeds, limits: Limits) -> Exposed:
    import torch

    from deploytool.runtimes import RUNTIMES

    module = RUNTIMES["torch_eager"].load(Path(path), {}).module  # the nn.Module, whose modules take hooks
    recorded: list[tuple[str, str, np.ndarray]] = []
    calls: dict[str, int] = {}
    used = [0]
    total = [0]

    def hook(name: str):
        def record(mod, _inputs, output):
            t = output if isinstance(output, torch.Tensor) else next(
                (o for o in output if isinstance(o, torch.Tensor)), None) if isinstance(output, (tuple, list)) else None
            if t is None or not t.is_floating_point():
                return
            total[0] += 1
            calls[name] = calls.get(name, 0) + 1
            size = t.numel() * 4
            if len(recorded) < limits.max_tensors and used[0] + size <= limits.max_bytes:
                label = name if calls[name] == 1 else f"{name}#{calls[name]}"
                recorded.append((label, type(mod).__name__, t.detach().float().numpy().copy()))
                used[0] += size
        return record

    handles = [m.register_forward_hook(hook(name)) for name, m in module.named_modules()
               if name and not list(m.children())]
    try:
        with torch.inference_mode():
            module(*[torch.from_numpy(np.ascontiguousarray(v)) for v in feeds.values()])
    finally:
        for h in handles:
            h.remove()
    nodes, previous = [], "input"
    for label, op_type, _ in recorded:
        nodes.append(Node(label, op_type, [previous], [label]))
        previous = label
    return Exposed(nodes, ["input"], {label: value for label, _, value in recorded}, total[0],
                   len(recorded) < total[0])


EXPOSER = Exposer("torch_eager", expose)
