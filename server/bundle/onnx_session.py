"""The ONNX model on CPU: one onnxruntime session per bundle, created and warmed up at start-up.

The declared inputs are checked against the model's own signature at load, so a bundle
whose bundle.yaml and model.onnx disagree is refused before it can serve a request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import onnxruntime as ort

from smallguard.server.bundle.graph_cut import cut_to_output
from smallguard.server.calibration.rows import spread
from smallguard.server.domain.bundle_spec import BundleSpec, InputSpec
from smallguard.server.domain.errors import BundleError

log = logging.getLogger(__name__)
_ONNX_TYPES = {
    "float32": "tensor(float)",
    "float64": "tensor(double)",
    "int32": "tensor(int32)",
    "int64": "tensor(int64)",
    "bool": "tensor(bool)",
    "string": "tensor(string)",
}


class OnnxModel:
    """A loaded, checked and warmed-up onnxruntime session.

    ``InferenceSession.run`` is thread-safe, so one session serves every request thread.
    """

    def __init__(self, spec: BundleSpec, intra_op_threads: int) -> None:
        options = ort.SessionOptions()
        # Small models on a busy server: one thread per run avoids oversubscribing the
        # cores the gRPC threads need; parallelism comes from concurrent requests.
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(
                str(spec.model_path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated types for bad files
            raise BundleError(f"onnxruntime cannot load it: {exc}", spec.model_path) from None
        self._path = spec.model_path
        self.input_names = tuple(node.name for node in self._session.get_inputs())
        # A model exported with a fixed batch size takes at most that many rows per run (None: any number).
        first = [node.shape[0] for node in self._session.get_inputs() if node.shape]
        self.batch_limit = first[0] if first and isinstance(first[0], int) and first[0] > 0 else None
        self.output_names = tuple(node.name for node in self._session.get_outputs())
        self.output_width = -1
        if not spec.is_extractor:  # an extractor's adapter checks its own feeds and outputs
            self._check_inputs(spec.inputs)
            self.output_width = self._check_output(spec.output_name)
        if not spec.is_extractor and spec.output_name and len(self.output_names) > 1:
            self._session = self._only_for(spec, options) or self._session
            self.output_names = tuple(node.name for node in self._session.get_outputs())
        self._outputs = [spec.output_name] if spec.output_name else list(self.output_names)
        self._first_output = self._outputs[:1]
        # The session's own run, without the Python wrapper's checks of the feeds' names on every call (about
        # 4 us of a 20 us digits run): the feeds were checked against this model's inputs at load and by the
        # request's input checks. The public method where a later onnxruntime no longer has it.
        core = getattr(self._session, "_sess", None)
        self.unwrapped = core is not None and callable(getattr(core, "run", None))
        self._core_run = core.run if self.unwrapped else (
            lambda names, feeds, _options: self._session.run(names, feeds))

    def _only_for(self, spec: BundleSpec, options: ort.SessionOptions) -> ort.InferenceSession | None:
        """A session of the part of the graph that computes the declared output (``graph_cut``), or None to keep
        the whole one. The part is kept only when it gives the whole graph's output bit for bit on probes spread
        over the inputs' declared range, one row alone and a batch of rows (a fusion across the cut, or another
        kernel for a batch, could change the last bits of a confidence)."""
        try:
            if any(item.kind == "text" for item in spec.inputs):  # no probes to compare the two graphs on
                return None
            part = cut_to_output(spec.model_path.read_bytes(), spec.output_name)
            if part is None:
                return None
            session = ort.InferenceSession(part, sess_options=options, providers=["CPUExecutionProvider"])
            for rows in {1, min(_PROBE_ROWS, self.batch_limit or _PROBE_ROWS)}:
                feeds = {item.name: _probe(item, rows) for item in spec.inputs}
                whole = self._session.run([spec.output_name], feeds)[0]
                if not same_numbers(session.run([spec.output_name], feeds)[0], whole):
                    log.info("%s: the graph cut to its output %r gives other numbers; running it whole",
                             spec.model_path, spec.output_name)
                    return None
        except Exception as exc:  # a model the cut cannot read, or whose part onnxruntime refuses (external data)
            log.info("%s: running the whole graph (%s: %s)", spec.model_path, type(exc).__name__, exc)
            return None
        return session

    def probes(self, specs: Sequence[InputSpec]) -> dict[str, np.ndarray] | None:
        """Feeds of as many rows as one run may take (at most 64), their values spread over the inputs' declared
        range: what a check of the model's batches runs on. None for a text input (no probes) or a model that
        takes one row at a time."""
        rows = min(_PROBE_ROWS, self.batch_limit or _PROBE_ROWS)
        if rows < 2 or any(spec.kind == "text" for spec in specs):
            return None
        return {spec.name: _probe(spec, rows) for spec in specs}

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Run the model; return the declared output for the batch."""
        return self._core_run(self._first_output, feeds if type(feeds) is dict else dict(feeds), None)[0]

    def run_all(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; return every output by name (what an extractor's adapter decodes)."""
        return dict(zip(self.output_names, self._session.run(list(self.output_names), dict(feeds)), strict=True))

    def example(self, specs: Sequence[InputSpec]) -> dict[str, np.ndarray]:
        """Valid feeds of one example, for the warm-up run that spares the first request the lazy set-up."""
        return {spec.name: _example(spec) for spec in specs}

    def _check_inputs(self, specs: Sequence[InputSpec]) -> None:
        actual = {node.name: node for node in self._session.get_inputs()}
        declared = {spec.name for spec in specs}
        if set(actual) != declared:
            raise BundleError(f"the model's inputs {sorted(actual)} do not match the inputs "
                              f"bundle.yaml declares {sorted(declared)}", self._path)
        for spec in specs:
            node = actual[spec.name]
            if node.type != _ONNX_TYPES[spec.dtype]:
                raise BundleError(f"input {spec.name!r} is {node.type} in the model but declared "
                                  f"{spec.dtype} in bundle.yaml", self._path)
            if spec.kind == "text":
                continue
            model_shape = list(node.shape[1:]) if node.shape else []
            if len(model_shape) != len(spec.shape) or any(
                isinstance(m, int) and d != -1 and m != d for m, d in zip(model_shape, spec.shape, strict=True)
            ):
                raise BundleError(f"input {spec.name!r} has shape {node.shape} in the model (batch "
                                  f"first); bundle.yaml declares {list(spec.shape)} per example", self._path)

    def _check_output(self, name: str) -> int:
        outputs = {node.name: node for node in self._session.get_outputs()}
        if name not in outputs:
            raise BundleError(f"the model has no output {name!r}; its outputs are {sorted(outputs)}", self._path)
        shape = outputs[name].shape
        return shape[-1] if shape and isinstance(shape[-1], int) else -1


def same_numbers(part: np.ndarray, whole: np.ndarray) -> bool:
    """Whether the cut graph's output is the whole graph's, bit for bit (-0.0 is not 0.0; a NaN's payload counts)."""
    return part.dtype == whole.dtype and part.shape == whole.shape and part.tobytes() == whole.tobytes()


_PROBE_ROWS = 64


def _probe(spec: InputSpec, rows: int) -> np.ndarray:
    """``rows`` examples of a tensor input, their values spread over its declared range ([-1, 1] when it declares
    none), as the calibration's own check of numpy spreads its values."""
    shape = (rows, *(1 if d == -1 else d for d in spec.shape))
    low = spec.min if spec.min is not None else -1.0
    high = spec.max if spec.max is not None else 1.0
    return (low + spread(int(np.prod(shape))) * (high - low)).reshape(shape).astype(spec.dtype)


def _example(spec: InputSpec) -> np.ndarray:
    if spec.kind == "text":
        return np.array(["warm-up"], dtype=object)
    shape = (1, *(1 if d == -1 else d for d in spec.shape))
    fill = spec.min if spec.min is not None else 0
    return np.full(shape, fill, dtype=spec.dtype)
