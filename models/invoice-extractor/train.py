"""Train and export the invoice-extractor model; write its calibration, test and shifted data.

    python models/invoice-extractor/train.py

Generates the splits with generate.py (seed 1; train and calibration/test are independent
streams of the normal mode, shifted is the ``--shifted`` mode), turns every document into
candidate rows with adapter.py, fits a small multi-label MLP that scores each candidate for
each field, exports it to ``model.onnx`` and checks onnxruntime against scikit-learn. It then
measures the served path (adapter.encode -> onnxruntime -> adapter.decode) on test and shifted,
and finally runs ``smallguard calibrate`` on the calibration data (test data held out), which
writes calibration.json and report/.

The model is kept deliberately small (one hidden layer of 8 units, 400 training documents),
so it is good but not perfect: smallguard's verifiers and thresholds need mistakes to catch.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
from skl2onnx import convert_sklearn
from skl2onnx.common.data_types import FloatTensorType
from sklearn.neural_network import MLPClassifier

HERE = Path(__file__).resolve().parent
SEED = 1
# Calibration needs room: its threshold part is halved (fields, then the document) and each field's
# guarantee runs at delta / 12, which needs a few hundred answered cases per half.
COUNTS = {"train": 400, "calibration": 2000, "test": 1000, "shifted": 1000}
TARGET_RISK = 0.02
DELTA = 0.05
HIDDEN_UNITS = (8,)
ALPHA = 1e-3
MAX_ITER = 60
# Opset 21 is the newest skl2onnx 1.20 is tested with; onnxruntime >= 1.17 runs it.
TARGET_OPSET = {"": 21, "ai.onnx.ml": 3}


def _load(name: str) -> ModuleType:
    """generate.py and adapter.py sit next to this file in a folder whose name is no identifier."""
    spec = importlib.util.spec_from_file_location(f"invoice_extractor_{name}", HERE / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


generate = _load("generate")
adapter = _load("adapter")


def datasets() -> dict[str, list[dict]]:
    return {split: generate.generate(SEED, count, split, shifted=split == "shifted")
            for split, count in COUNTS.items()}


def matrix(records: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Candidate rows and their multi-label targets: a candidate is positive for every field it equals."""
    xs, ys = [], []
    for record in records:
        text, truth = record["text"], record["fields"]
        cands = adapter.candidates(text)
        xs.append(adapter.encode(text)[adapter.INPUT_NAME])
        y = np.zeros((len(cands), len(adapter.FIELDS)), dtype=np.int64)
        for i, c in enumerate(cands):
            for k, name in enumerate(adapter.FIELDS):
                y[i, k] = c.kind == adapter.FIELD_KIND[name] and c.value == truth[name]
        ys.append(y)
    return np.concatenate(xs), np.concatenate(ys)


def train(x: np.ndarray, y: np.ndarray) -> MLPClassifier:
    model = MLPClassifier(hidden_layer_sizes=HIDDEN_UNITS, alpha=ALPHA, max_iter=MAX_ITER, random_state=SEED)
    return model.fit(x, y)


def export(model: MLPClassifier, path: Path) -> None:
    onnx_model = convert_sklearn(
        model,
        name="invoice-extractor",
        initial_types=[(adapter.INPUT_NAME, FloatTensorType([None, adapter.FEATURE_DIM]))],
        options={id(model): {"zipmap": False}},
        target_opset=TARGET_OPSET,
    )
    path.write_bytes(onnx_model.SerializeToString())


def session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def extract(sess: ort.InferenceSession, text: str) -> dict[str, tuple[str | None, float]]:
    """The path the server takes: encode, run, decode."""
    (probabilities,) = sess.run([adapter.OUTPUT_NAME], adapter.encode(text))
    return adapter.decode(text, {adapter.OUTPUT_NAME: probabilities})


def accuracy(sess: ort.InferenceSession, records: list[dict]) -> dict[str, float]:
    """Per-field exact-match accuracy and the share of documents with every field right."""
    right = {name: 0 for name in adapter.FIELDS}
    documents = 0
    for record in records:
        predicted = extract(sess, record["text"])
        hits = [predicted[name][0] == record["fields"][name] for name in adapter.FIELDS]
        for name, hit in zip(adapter.FIELDS, hits, strict=True):
            right[name] += hit
        documents += all(hits)
    scores = {name: right[name] / len(records) for name in adapter.FIELDS}
    scores["document"] = documents / len(records)
    return scores


def main() -> None:
    started = time.perf_counter()
    data = datasets()
    x_train, y_train = matrix(data["train"])
    model = train(x_train, y_train)
    model_path = HERE / "model.onnx"
    export(model, model_path)
    sess = session(model_path)

    x_test, _ = matrix(data["test"])
    (onnx_p,) = sess.run([adapter.OUTPUT_NAME], {adapter.INPUT_NAME: x_test})
    np.testing.assert_allclose(onnx_p, model.predict_proba(x_test), atol=1e-5,
                               err_msg="ONNX and scikit-learn disagree on the test candidates")

    for split in ("calibration", "test", "shifted"):
        generate.write_jsonl(HERE / "data" / f"{split}.jsonl", data[split])

    print(f"train: {len(data['train'])} documents, {len(x_train)} candidate rows x {x_train.shape[1]} features; "
          f"MLP {HIDDEN_UNITS}, alpha {ALPHA}, {model.n_iter_} epochs")
    print(f"model.onnx: {model_path.stat().st_size} bytes; onnxruntime matches scikit-learn on "
          f"{len(x_test)} test rows (atol 1e-5)")
    header = "".join(f"{name:>16}" for name in (*adapter.FIELDS, "document"))
    print(f"{'split':<12}{header}")
    for split in ("test", "shifted"):
        scores = accuracy(sess, data[split])
        print(f"{split:<12}" + "".join(f"{scores[name]:>16.4f}" for name in (*adapter.FIELDS, "document")))
    print(f"done in {time.perf_counter() - started:.1f} s; calibrating with smallguard calibrate")
    calibrate(HERE, TARGET_RISK, DELTA)


def calibrate(folder: Path, target_risk: float, delta: float) -> None:
    """``smallguard calibrate`` on the bundle in ``folder``: its data/calibration.jsonl, tested on data/test.jsonl
    (also used by invoice-extractor-large/train.py)."""
    subprocess.run([sys.executable, "-m", "smallguard.server.cli", "calibrate", str(folder),
                    "--data", str(folder / "data" / "calibration.jsonl"), "--test", str(folder / "data" / "test.jsonl"),
                    "--method", "auto", "--target-risk", str(target_risk), "--delta", str(delta),
                    "--report", str(folder / "report")], check=True)


if __name__ == "__main__":
    main()
