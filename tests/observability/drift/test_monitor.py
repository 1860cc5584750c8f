"""The drift monitor: PSI against an independent calculation, the window, min_samples, state changes,
and the bundle's `drift:` settings."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from scipy.special import rel_entr

from smallguard.server.assembly import load_repository
from smallguard.server.bundle.bundle_file import read_bundle
from smallguard.server.domain.bundle_spec import BundleSpec
from smallguard.server.domain.errors import BundleError
from smallguard.server.domain.predictions import Decision
from smallguard.server.observability.drift import DriftMonitor, DriftSnapshot, State, load_monitor
from smallguard.server.observability.drift import monitor as monitor_module
from smallguard.server.observability.drift.features import Bins
from smallguard.server.observability.drift.psi import EPSILON, psi
from smallguard.verifiers import VerifierRegistry
from tests.conftest import DIGITS, copy_bundle, digits_rows
from tests.observability.drift.conftest import SHIPPED, digitize

GOOD_YAML = (DIGITS / "bundle.yaml").read_text()
TEST_PIXELS = np.array([row["pixels"] for row in digits_rows("test")], dtype=np.float32)
INVERTED = (16 - TEST_PIXELS).astype(np.float32)


def independent_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI as the symmetrised Kullback-Leibler divergence, KL(a||e) + KL(e||a), with scipy's rel_entr."""
    e, a = np.maximum(expected, EPSILON), np.maximum(actual, EPSILON)
    return float(np.sum(rel_entr(a, e) + rel_entr(e, a)))


def test_psi_matches_the_symmetrised_kl_divergence_and_a_hand_computed_value() -> None:
    assert psi(np.array([0.5, 0.5]), np.array([0.9, 0.1])) == pytest.approx(0.4 * np.log(1.8) + 0.4 * np.log(5))
    assert psi(np.array([0.25] * 4), np.array([0.25] * 4)) == 0.0
    rng = np.random.default_rng(7)
    for _ in range(50):
        bins = int(rng.integers(2, 12))
        expected, actual = rng.dirichlet(np.ones(bins)), rng.dirichlet(np.ones(bins) * 0.3)
        actual[rng.integers(bins)] = 0.0  # an empty bin: floored at EPSILON, finite
        actual /= actual.sum()
        assert psi(expected, actual) == pytest.approx(independent_psi(expected, actual), rel=1e-12)
    rows = rng.dirichlet(np.ones(6), size=(5,))
    assert psi(rows, rows[::-1]).tolist() == pytest.approx([independent_psi(a, b) for a, b in zip(rows, rows[::-1],
                                                                                                   strict=True)])


def monitor(window: int = 100, min_samples: int = 30, **policy: object) -> DriftMonitor:
    spec = read_bundle(DIGITS)
    spec = dataclasses.replace(spec, drift=dataclasses.replace(spec.drift, window=window, min_samples=min_samples,
                                                               **policy))
    found = load_monitor(spec)
    assert found is not None
    return found


def observe(drift: DriftMonitor, pixels: np.ndarray, confidences: np.ndarray, decisions: list[Decision]) -> None:
    for image, confidence, decision in zip(pixels, confidences, decisions, strict=True):
        drift.observe({"pixels": image[np.newaxis, :]}, float(confidence), decision)


def expected_scores(pixels: np.ndarray, confidences: np.ndarray, decisions: list[Decision]) -> dict[str, float]:
    """The scores of a window holding exactly these predictions, computed from the shipped reference
    with numpy's digitize and scipy: nothing of the monitor's own binning or sums."""
    profile = SHIPPED["inputs"]["pixels"]
    per_feature = [independent_psi(np.array(profile["proportions"][f]),
                                   digitize(pixels[:, f].astype(np.float64), profile["edges"][f]))
                   for f in range(64)]
    confidence = SHIPPED["confidence"]
    rates = SHIPPED["decisions"]["rates"]
    return {
        "confidence": independent_psi(np.array(confidence["proportions"]), digitize(confidences, confidence["edges"])),
        "escalation_rate": decisions.count(Decision.ESCALATE) / len(decisions) - rates["ESCALATE"],
        "abstention_rate": decisions.count(Decision.ABSTAIN) / len(decisions) - rates["ABSTAIN"],
        "input:pixels": float(np.mean(per_feature)),
    }


def scores(snapshot: DriftSnapshot) -> dict[str, float]:
    return {s.signal: s.score for s in snapshot.scores}


def traffic(n: int, seed: int, inverted: bool = False) -> tuple[np.ndarray, np.ndarray, list[Decision]]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, len(TEST_PIXELS), size=n)
    pixels = (INVERTED if inverted else TEST_PIXELS)[rows]
    # normal confidences: a reference bin drawn by its share, then a value inside it
    edges = np.array(SHIPPED["confidence"]["edges"])
    inside = np.concatenate([[edges[0] - 0.01], (edges[:-1] + edges[1:]) / 2, [(edges[-1] + 1) / 2]])
    normal = inside[rng.choice(len(inside), size=n, p=SHIPPED["confidence"]["proportions"])]
    confidences = rng.uniform(0.5, 1.0, size=n) if inverted else normal
    mix = [0.6, 0.1, 0.3] if inverted else [0.83, 0.17, 0.0]  # normal: about the reference's mix
    decisions = [Decision(int(v)) for v in rng.choice([1, 2, 3], size=n, p=mix)]
    return pixels, confidences, decisions


def test_scores_match_an_independent_calculation_on_the_window() -> None:
    drift = monitor(window=100)
    pixels, confidences, decisions = traffic(100, seed=1)
    observe(drift, pixels, confidences, decisions)
    snapshot = drift.snapshot()
    assert snapshot.samples == 100 and snapshot.state in (State.WITHIN_LIMITS, State.DRIFTED)
    assert scores(snapshot) == pytest.approx(expected_scores(pixels, confidences, decisions), rel=1e-6, abs=1e-9)


def test_only_the_last_window_counts() -> None:
    drift = monitor(window=100)
    shifted = traffic(130, seed=2, inverted=True)
    normal = traffic(170, seed=3)
    observe(drift, *shifted)
    assert drift.snapshot().state is State.DRIFTED
    observe(drift, *normal)  # 300 in all: the window holds the last 100, all normal
    snapshot = drift.snapshot()
    assert snapshot.samples == 100
    last = (normal[0][-100:], normal[1][-100:], normal[2][-100:])
    assert scores(snapshot) == pytest.approx(expected_scores(*last), rel=1e-6, abs=1e-9)
    assert scores(snapshot)["input:pixels"] < 0.2


def test_no_score_before_min_samples_and_every_signal_from_then_on() -> None:
    drift = monitor(window=100, min_samples=30)
    pixels, confidences, decisions = traffic(30, seed=4, inverted=True)
    assert drift.snapshot().state is State.WARMING_UP
    observe(drift, pixels[:29], confidences[:29], decisions[:29])
    warming = drift.snapshot()
    assert warming.state is State.WARMING_UP and warming.scores == () and warming.samples == 29
    assert warming.message == "29 of the 30 predictions needed before drift is scored"
    assert not drift.drifted
    assert dict(drift.limits()) == {"confidence": 0.2, "escalation_rate": 0.1, "abstention_rate": 0.1,
                                    "input:pixels": 0.2}
    observe(drift, pixels[29:], confidences[29:], decisions[29:])
    scored = drift.snapshot()
    assert scored.samples == 30 and [s.signal for s in scored.scores] == [
        "confidence", "escalation_rate", "abstention_rate", "input:pixels"]
    assert scored.state is State.DRIFTED and drift.drifted
    assert "input:pixels" in scored.message and "> 0.2" in scored.message


def test_listeners_hear_each_change_of_state_once_and_predictions_update_it_without_a_read() -> None:
    drift = monitor(window=100, min_samples=50, on_drift="escalate")
    heard: list[State] = []
    drift.subscribe(lambda snapshot: heard.append(snapshot.state))
    observe(drift, *traffic(120, seed=5))
    assert heard == [] and not drift.escalating
    observe(drift, *traffic(120, seed=6, inverted=True))  # evaluated on the way, every few predictions
    assert heard == [State.DRIFTED] and drift.drifted and drift.escalating
    assert drift.message.startswith("drifted over the last 100 predictions: ")
    drift.snapshot()
    assert heard == [State.DRIFTED]
    observe(drift, *traffic(120, seed=7))
    assert heard == [State.DRIFTED, State.WITHIN_LIMITS] and not drift.escalating


def test_a_rise_in_escalations_past_the_limit_is_drift_and_a_fall_is_not() -> None:
    drift = monitor(window=100, min_samples=50)
    pixels, confidences, _ = traffic(100, seed=8)
    observe(drift, pixels, confidences, [Decision.ESCALATE] * 20 + [Decision.ANSWER] * 80)
    snapshot = drift.snapshot()
    assert scores(snapshot)["escalation_rate"] == pytest.approx(0.2)
    assert scores(snapshot)["abstention_rate"] == pytest.approx(-SHIPPED["decisions"]["rates"]["ABSTAIN"])
    assert [s.signal for s in snapshot.scores if s.past_limit] == ["escalation_rate"]


@pytest.mark.parametrize(("change", "problem"), [
    (("window: 500", "window: 5"), "drift.window: expected a whole number from 10 to 100000, got 5"),
    (("window: 500", "window: many"), "drift.window: expected a whole number from 10 to 100000, got 'many'"),
    (("min_samples: 100", "min_samples: 600"), "drift.min_samples: 600 is more than the window of 500"),
    (("psi_limit: 0.2", "psi_limit: -1"), "drift.psi_limit: expected a positive number, got -1"),
    (("escalation_rate_limit: 0.1", "escalation_rate_limit: true"),
     "drift.escalation_rate_limit: expected a positive number, got True"),
    (("on_drift: none", "on_drift: panic"), "drift.on_drift: 'panic' is not allowed; expected one of none, escalate"),
    (("window: 500", "windows: 500"), "drift.windows: unknown key"),
], ids=["window-small", "window-text", "min-over-window", "psi-limit", "rate-limit", "on-drift", "unknown-key"])
def test_drift_settings_are_checked_like_the_rest_of_bundle_yaml(tmp_path: Path, change: tuple[str, str],
                                                                  problem: str) -> None:
    copy_bundle(DIGITS, tmp_path, "digits", GOOD_YAML.replace(*change), extra=("reference.json",))
    with pytest.raises(BundleError) as refused:
        load_repository(tmp_path, VerifierRegistry.discover(), 1)
    assert refused.value.path.endswith("bundle.yaml") and problem in refused.value.problem


def test_the_shipped_bundle_states_the_defaults() -> None:
    spec: BundleSpec = read_bundle(DIGITS)
    assert spec.drift == type(spec.drift)()


def test_a_window_is_scored_every_quarter_and_a_quiet_model_at_its_next_prediction(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Without a read: every quarter window of predictions (at most 128), or, when a prediction comes, once the
    oldest waiting one is FLUSH_AFTER_S old. The published message counts the predictions scored so far."""
    drift = monitor(window=500, min_samples=400)
    assert drift.flush_every == 125
    pixels, confidences, decisions = traffic(130, seed=11)
    observe(drift, pixels[:124], confidences[:124], decisions[:124])
    assert drift.message.startswith("0 of the 400 predictions")  # 124 waiting, none scored yet
    observe(drift, pixels[124:125], confidences[124:125], decisions[124:125])
    assert drift.message.startswith("125 of the 400 predictions")
    now = [1000.0]
    monkeypatch.setattr(monitor_module, "time", SimpleNamespace(monotonic=lambda: now[0]))  # the monitor's clock only
    observe(drift, pixels[125:128], confidences[125:128], decisions[125:128])  # a quiet spell: 3 wait
    assert drift.message.startswith("125 of the 400 predictions")
    now[0] += monitor_module.FLUSH_AFTER_S
    observe(drift, pixels[128:129], confidences[128:129], decisions[128:129])  # the next one, a second later
    assert drift.message.startswith("129 of the 400 predictions")


def test_a_batch_observed_at_once_scores_as_its_predictions_one_by_one() -> None:
    one, many = monitor(window=100), monitor(window=100)
    pixels, confidences, decisions = traffic(230, seed=11)
    observe(one, pixels, confidences, decisions)
    for start in range(0, 230, 64):  # batches of 64, the last one short, across the window's laps
        end = start + 64
        many.observe_many([{"pixels": image[np.newaxis, :]} for image in pixels[start:end]],
                          [float(c) for c in confidences[start:end]], decisions[start:end])
    a, b = one.snapshot(), many.snapshot()
    assert b.samples == a.samples == 100
    assert scores(b) == pytest.approx(scores(a), rel=1e-12, abs=1e-12)
    assert scores(b) == pytest.approx(expected_scores(pixels[-100:], confidences[-100:], decisions[-100:]), rel=1e-6,
                                      abs=1e-9)


def test_the_bins_count_the_edges_below_each_value_as_the_comparison_cube_does() -> None:
    rng = np.random.default_rng(4)
    edges = [sorted(rng.uniform(0, 16, size=size).tolist()) for size in rng.integers(1, 10, size=64)]
    bins = Bins(edges)
    values = rng.uniform(-1, 17, size=(50, 64))
    values[0, :] = [e[0] for e in edges]  # on an edge: not above it
    cube = (values[:, :, np.newaxis] > bins._padded).sum(axis=2)
    assert bins.indices(values).tolist() == cube.tolist()
    assert bins.indices(values[:1]).tolist() == [bins.index(values[0]).tolist()]
