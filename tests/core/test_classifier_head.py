"""The classifier head's top-k: a batch (numpy's stable argsort over every row) ranks as one row (sorted())."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pytest

from smallguard.server.core.classifier import ClassifierHead, classification, label_score
from smallguard.verifiers import LabelScore, ModelKind, Prediction


class GivenScores:
    """Stands in for the model run: ties between probabilities are rare from the real digits model, so the
    test gives the scores itself (what the head does with them is the code under test)."""

    def __init__(self, rows: list[list[float]]) -> None:
        self.rows = np.asarray(rows, dtype=np.float32)

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        (index,) = feeds.values()
        return self.rows[index.reshape(-1).astype(int)]


def test_ties_rank_in_label_order_in_a_batch_as_alone() -> None:
    """Four labels by hand, then fifty with many ties (numpy's default sort is not stable past sixteen)."""
    rows = [[0.25, 0.25, 0.5, 0.0],  # a tie behind the best
            [0.25, 0.25, 0.25, 0.25],  # all tied: label order
            [0.0, 0.4, 0.2, 0.4],  # a tie for the best: the first label wins
            [0.1, 0.2, 0.3, 0.4]]
    head = ClassifierHead(GivenScores(rows), ["a", "b", "c", "d"], "probabilities", None, top_k=3)  # type: ignore[arg-type]
    assert head._row is not None  # one row goes the plain-Python way: two implementations are compared
    batch = head.predict_batch({"row": np.arange(len(rows), dtype=np.float32).reshape(-1, 1)})
    alone = [head.predict({"row": np.array([[i]], dtype=np.float32)}) for i in range(len(rows))]
    assert batch == alone
    assert [[s.label for s in r.prediction.top_k] for r in batch] == [["c", "a", "b"], ["a", "b", "c"],
                                                                      ["b", "d", "c"], ["d", "c", "b"]]
    assert [r.prediction.label for r in batch] == ["c", "a", "b", "d"]

    many = [[0.5] * 3 + [0.25] * 37 + [0.5] * 10, (np.round(np.random.default_rng(0).random(50) * 4) / 4).tolist()]
    head = ClassifierHead(GivenScores(many), [f"l{i}" for i in range(50)], "probabilities", None,  # type: ignore[arg-type]
                          top_k=8)
    batch = head.predict_batch({"row": np.arange(2, dtype=np.float32).reshape(-1, 1)})
    assert batch == [head.predict({"row": np.array([[i]], dtype=np.float32)}) for i in range(2)]
    assert [s.label for s in batch[0].prediction.top_k] == ["l0", "l1", "l2", "l40", "l41", "l42", "l43", "l44"]


def test_a_batch_builds_the_sdk_objects_the_constructors_build_with_every_field_they_declare() -> None:
    """``classification`` and ``label_score`` set the slots directly (a frozen dataclass's __init__ is slow): if the
    SDK adds a field to Prediction or LabelScore, they must set it too."""
    assert [f.name for f in dataclasses.fields(LabelScore)] == ["label", "probability"]
    assert [f.name for f in dataclasses.fields(Prediction)] == ["kind", "label", "probability", "top_k", "fields"]
    top = (label_score("7", 0.75), label_score("1", 0.25))
    built = classification("7", 0.75, top)
    assert top == (LabelScore("7", 0.75), LabelScore("1", 0.25))
    assert built == Prediction(ModelKind.CLASSIFIER, "7", 0.75, (LabelScore("7", 0.75), LabelScore("1", 0.25)))
    assert built.value("label") == "7" and built.fields == {} and hash(top[0]) == hash(LabelScore("7", 0.75))
    with pytest.raises(dataclasses.FrozenInstanceError):
        built.label = "1"  # type: ignore[misc]
