"""An ONNX model cut down to the nodes one of its outputs depends on.

onnxruntime runs every node of a graph whatever outputs a run asks for. A scikit-learn classifier
converted to ONNX also computes its label (ArgMax, a label lookup, casts), which the guard never reads:
on the shipped digits model that is a third of each run. Cutting is a walk back from the output through
each node's inputs. It is done on the model's bytes with a schema of the few fields it touches
(``onnx_graph.proto``; the rest of the model passes through as unknown fields), not with the onnx
package, whose import alone would add about 10 MiB to every server process.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from smallguard.server.bundle.onnx_graph_pb2 import Model


def cut_to_output(data: bytes, output: str) -> bytes | None:
    """The model ``data`` with only the nodes, initializers and value infos that ``output`` depends on, and
    ``output`` its only output; None when that would leave out nothing, or when a cut is not known to be safe
    (a subgraph may read any tensor by name; training graphs refer to the main graph's)."""
    model = Model.FromString(data)
    graph = model.graph
    if model.training_info or any(a.HasField("g") or a.graphs for node in graph.node for a in node.attribute):
        return None
    if output not in {value.name for value in graph.output}:
        return None
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output}
    needed: set[int] = set()
    wanted = {output}
    stack = [output]
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in needed:
            continue
        needed.add(i)
        for name in graph.node[i].input:
            if name and name not in wanted:
                wanted.add(name)
                stack.append(name)
    if len(needed) == len(graph.node) and len(graph.output) == 1:
        return None
    dropped = {t.name for t in graph.initializer if t.name not in wanted} | {
        t.values.name for t in graph.sparse_initializer if t.values.name not in wanted}
    _keep(graph.node, lambda i, _node: i in needed)
    _keep(graph.initializer, lambda _i, tensor: tensor.name in wanted)
    _keep(graph.sparse_initializer, lambda _i, tensor: tensor.values.name in wanted)
    _keep(graph.input, lambda _i, value: value.name not in dropped)  # an initializer listed as an input (IR < 4)
    _keep(graph.value_info, lambda _i, value: value.name in wanted)
    _keep(graph.output, lambda _i, value: value.name == output)
    return model.SerializeToString()


def _keep(entries: Any, keep: Callable[[int, Any], bool]) -> None:
    """Keep the ``entries`` (a repeated message field) for which ``keep(index, entry)`` holds, in order, each
    entry whole (unknown fields included): the others are deleted where they are, nothing is copied."""
    for i in reversed(range(len(entries))):
        if not keep(i, entries[i]):
            del entries[i]
