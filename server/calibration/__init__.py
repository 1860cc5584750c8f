"""Calibration: fit a method on held-out data, measure it, and certify a confidence threshold.

Applying a stored calibration (``load_calibration`` then ``calibrator.probabilities``) needs
only numpy; fitting, method selection and threshold selection import scipy or scikit-learn when called.
"""

from smallguard.server.calibration.binary import (
    BINARY_METHODS,
    BinaryCalibrator,
    HistogramBinning,
    IsotonicCalibration,
    PlattScaling,
    TopLabelCalibrator,
)
from smallguard.server.calibration.checks import CalibrationError
from smallguard.server.calibration.measures import (
    ReliabilityBin,
    accuracy,
    binary_nll,
    brier_score,
    expected_calibration_error,
    maximum_calibration_error,
    negative_log_likelihood,
    reliability,
    summary,
    top1,
)
from smallguard.server.calibration.methods import METHODS, Calibrator, TemperatureScaling, load_method
from smallguard.server.calibration.probabilities import logits_from_probabilities, softmax
from smallguard.server.calibration.selection import (
    MethodSelection,
    select_binary_method,
    select_method,
)
from smallguard.server.calibration.store import Calibration, load_calibration, parse_calibration, write_calibration
from smallguard.server.calibration.threshold import (
    NoValidThresholdError,
    ThresholdChoice,
    choose_threshold,
    clopper_pearson_upper,
    samples_needed,
)

__all__ = [
    "BINARY_METHODS",
    "METHODS",
    "BinaryCalibrator",
    "Calibration",
    "CalibrationError",
    "Calibrator",
    "HistogramBinning",
    "IsotonicCalibration",
    "MethodSelection",
    "NoValidThresholdError",
    "PlattScaling",
    "ReliabilityBin",
    "TemperatureScaling",
    "ThresholdChoice",
    "TopLabelCalibrator",
    "accuracy",
    "binary_nll",
    "brier_score",
    "choose_threshold",
    "clopper_pearson_upper",
    "expected_calibration_error",
    "load_calibration",
    "load_method",
    "logits_from_probabilities",
    "maximum_calibration_error",
    "negative_log_likelihood",
    "parse_calibration",
    "reliability",
    "samples_needed",
    "select_binary_method",
    "select_method",
    "softmax",
    "summary",
    "top1",
    "write_calibration",
]
