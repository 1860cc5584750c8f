from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class BatchLayout(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    BATCH_LAYOUT_RESULTS: _ClassVar[BatchLayout]
    BATCH_LAYOUT_COLUMNS: _ClassVar[BatchLayout]

class Decision(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DECISION_UNSPECIFIED: _ClassVar[Decision]
    ANSWER: _ClassVar[Decision]
    ABSTAIN: _ClassVar[Decision]
    ESCALATE: _ClassVar[Decision]

class DataType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DATA_TYPE_UNSPECIFIED: _ClassVar[DataType]
    FLOAT32: _ClassVar[DataType]
    FLOAT64: _ClassVar[DataType]
    INT32: _ClassVar[DataType]
    INT64: _ClassVar[DataType]
    BOOL: _ClassVar[DataType]
BATCH_LAYOUT_RESULTS: BatchLayout
BATCH_LAYOUT_COLUMNS: BatchLayout
DECISION_UNSPECIFIED: Decision
ANSWER: Decision
ABSTAIN: Decision
ESCALATE: Decision
DATA_TYPE_UNSPECIFIED: DataType
FLOAT32: DataType
FLOAT64: DataType
INT32: DataType
INT64: DataType
BOOL: DataType

class PredictBatchRequest(_message.Message):
    __slots__ = ("model", "version", "items", "inputs", "layout")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    ITEMS_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    LAYOUT_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    items: _containers.RepeatedCompositeFieldContainer[PredictRequest]
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    layout: BatchLayout
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., items: _Optional[_Iterable[_Union[PredictRequest, _Mapping]]] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., layout: _Optional[_Union[BatchLayout, str]] = ...) -> None: ...

class PredictBatchResponse(_message.Message):
    __slots__ = ("results", "columns")
    RESULTS_FIELD_NUMBER: _ClassVar[int]
    COLUMNS_FIELD_NUMBER: _ClassVar[int]
    results: _containers.RepeatedCompositeFieldContainer[PredictBatchResult]
    columns: BatchColumns
    def __init__(self, results: _Optional[_Iterable[_Union[PredictBatchResult, _Mapping]]] = ..., columns: _Optional[_Union[BatchColumns, _Mapping]] = ...) -> None: ...

class BatchColumns(_message.Message):
    __slots__ = ("model", "model_version", "trace_id", "request_ids", "decisions", "labels", "probabilities", "confidences", "raw_confidences", "thresholds", "answered_by", "top_k_counts", "top_k_labels", "top_k_probabilities", "reason_lists", "reasons", "verifier_lists", "verifiers", "costs", "review_cases", "tiers", "errors")
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_IDS_FIELD_NUMBER: _ClassVar[int]
    DECISIONS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    RAW_CONFIDENCES_FIELD_NUMBER: _ClassVar[int]
    THRESHOLDS_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_COUNTS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_LABELS_FIELD_NUMBER: _ClassVar[int]
    TOP_K_PROBABILITIES_FIELD_NUMBER: _ClassVar[int]
    REASON_LISTS_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_LISTS_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    COSTS_FIELD_NUMBER: _ClassVar[int]
    REVIEW_CASES_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    ERRORS_FIELD_NUMBER: _ClassVar[int]
    model: str
    model_version: str
    trace_id: str
    request_ids: _containers.RepeatedScalarFieldContainer[str]
    decisions: _containers.RepeatedScalarFieldContainer[Decision]
    labels: _containers.RepeatedScalarFieldContainer[str]
    probabilities: _containers.RepeatedScalarFieldContainer[float]
    confidences: _containers.RepeatedScalarFieldContainer[float]
    raw_confidences: _containers.RepeatedScalarFieldContainer[float]
    thresholds: _containers.RepeatedScalarFieldContainer[float]
    answered_by: _containers.RepeatedScalarFieldContainer[str]
    top_k_counts: _containers.RepeatedScalarFieldContainer[int]
    top_k_labels: _containers.RepeatedScalarFieldContainer[str]
    top_k_probabilities: _containers.RepeatedScalarFieldContainer[float]
    reason_lists: _containers.RepeatedCompositeFieldContainer[ReasonList]
    reasons: _containers.RepeatedScalarFieldContainer[int]
    verifier_lists: _containers.RepeatedCompositeFieldContainer[VerifierResultList]
    verifiers: _containers.RepeatedScalarFieldContainer[int]
    costs: _containers.RepeatedScalarFieldContainer[float]
    review_cases: _containers.RepeatedScalarFieldContainer[int]
    tiers: _containers.RepeatedCompositeFieldContainer[ItemTiers]
    errors: _containers.RepeatedCompositeFieldContainer[IndexedItemError]
    def __init__(self, model: _Optional[str] = ..., model_version: _Optional[str] = ..., trace_id: _Optional[str] = ..., request_ids: _Optional[_Iterable[str]] = ..., decisions: _Optional[_Iterable[_Union[Decision, str]]] = ..., labels: _Optional[_Iterable[str]] = ..., probabilities: _Optional[_Iterable[float]] = ..., confidences: _Optional[_Iterable[float]] = ..., raw_confidences: _Optional[_Iterable[float]] = ..., thresholds: _Optional[_Iterable[float]] = ..., answered_by: _Optional[_Iterable[str]] = ..., top_k_counts: _Optional[_Iterable[int]] = ..., top_k_labels: _Optional[_Iterable[str]] = ..., top_k_probabilities: _Optional[_Iterable[float]] = ..., reason_lists: _Optional[_Iterable[_Union[ReasonList, _Mapping]]] = ..., reasons: _Optional[_Iterable[int]] = ..., verifier_lists: _Optional[_Iterable[_Union[VerifierResultList, _Mapping]]] = ..., verifiers: _Optional[_Iterable[int]] = ..., costs: _Optional[_Iterable[float]] = ..., review_cases: _Optional[_Iterable[int]] = ..., tiers: _Optional[_Iterable[_Union[ItemTiers, _Mapping]]] = ..., errors: _Optional[_Iterable[_Union[IndexedItemError, _Mapping]]] = ...) -> None: ...

class ReasonList(_message.Message):
    __slots__ = ("reasons",)
    REASONS_FIELD_NUMBER: _ClassVar[int]
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    def __init__(self, reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ...) -> None: ...

class VerifierResultList(_message.Message):
    __slots__ = ("verifiers",)
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierResult]
    def __init__(self, verifiers: _Optional[_Iterable[_Union[VerifierResult, _Mapping]]] = ...) -> None: ...

class ItemTiers(_message.Message):
    __slots__ = ("item", "tiers")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    item: int
    tiers: _containers.RepeatedCompositeFieldContainer[TierResult]
    def __init__(self, item: _Optional[int] = ..., tiers: _Optional[_Iterable[_Union[TierResult, _Mapping]]] = ...) -> None: ...

class IndexedItemError(_message.Message):
    __slots__ = ("item", "error")
    ITEM_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    item: int
    error: ItemError
    def __init__(self, item: _Optional[int] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class PredictBatchResult(_message.Message):
    __slots__ = ("response", "error")
    RESPONSE_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    response: PredictResponse
    error: ItemError
    def __init__(self, response: _Optional[_Union[PredictResponse, _Mapping]] = ..., error: _Optional[_Union[ItemError, _Mapping]] = ...) -> None: ...

class ItemError(_message.Message):
    __slots__ = ("code", "message")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: str
    message: str
    def __init__(self, code: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class Tensor(_message.Message):
    __slots__ = ("name", "dtype", "shape", "contents", "raw_contents")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    CONTENTS_FIELD_NUMBER: _ClassVar[int]
    RAW_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    name: str
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    contents: TensorContents
    raw_contents: bytes
    def __init__(self, name: _Optional[str] = ..., dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., contents: _Optional[_Union[TensorContents, _Mapping]] = ..., raw_contents: _Optional[bytes] = ...) -> None: ...

class TensorContents(_message.Message):
    __slots__ = ("float_contents", "double_contents", "int32_contents", "int64_contents", "bool_contents")
    FLOAT_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    DOUBLE_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    INT32_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    INT64_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    BOOL_CONTENTS_FIELD_NUMBER: _ClassVar[int]
    float_contents: _containers.RepeatedScalarFieldContainer[float]
    double_contents: _containers.RepeatedScalarFieldContainer[float]
    int32_contents: _containers.RepeatedScalarFieldContainer[int]
    int64_contents: _containers.RepeatedScalarFieldContainer[int]
    bool_contents: _containers.RepeatedScalarFieldContainer[bool]
    def __init__(self, float_contents: _Optional[_Iterable[float]] = ..., double_contents: _Optional[_Iterable[float]] = ..., int32_contents: _Optional[_Iterable[int]] = ..., int64_contents: _Optional[_Iterable[int]] = ..., bool_contents: _Optional[_Iterable[bool]] = ...) -> None: ...

class PredictRequest(_message.Message):
    __slots__ = ("model", "version", "request_id", "inputs", "text", "context", "max_tier", "max_cost")
    class ContextEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    MODEL_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    CONTEXT_FIELD_NUMBER: _ClassVar[int]
    MAX_TIER_FIELD_NUMBER: _ClassVar[int]
    MAX_COST_FIELD_NUMBER: _ClassVar[int]
    model: str
    version: str
    request_id: str
    inputs: _containers.RepeatedCompositeFieldContainer[Tensor]
    text: str
    context: _containers.ScalarMap[str, str]
    max_tier: int
    max_cost: float
    def __init__(self, model: _Optional[str] = ..., version: _Optional[str] = ..., request_id: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[Tensor, _Mapping]]] = ..., text: _Optional[str] = ..., context: _Optional[_Mapping[str, str]] = ..., max_tier: _Optional[int] = ..., max_cost: _Optional[float] = ...) -> None: ...

class LabelScore(_message.Message):
    __slots__ = ("label", "probability")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ...) -> None: ...

class Classification(_message.Message):
    __slots__ = ("label", "probability", "top_k")
    LABEL_FIELD_NUMBER: _ClassVar[int]
    PROBABILITY_FIELD_NUMBER: _ClassVar[int]
    TOP_K_FIELD_NUMBER: _ClassVar[int]
    label: str
    probability: float
    top_k: _containers.RepeatedCompositeFieldContainer[LabelScore]
    def __init__(self, label: _Optional[str] = ..., probability: _Optional[float] = ..., top_k: _Optional[_Iterable[_Union[LabelScore, _Mapping]]] = ...) -> None: ...

class ExtractedField(_message.Message):
    __slots__ = ("name", "value", "present", "confidence", "raw_confidence")
    NAME_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    PRESENT_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RAW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    name: str
    value: str
    present: bool
    confidence: float
    raw_confidence: float
    def __init__(self, name: _Optional[str] = ..., value: _Optional[str] = ..., present: _Optional[bool] = ..., confidence: _Optional[float] = ..., raw_confidence: _Optional[float] = ...) -> None: ...

class Extraction(_message.Message):
    __slots__ = ("fields",)
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    fields: _containers.RepeatedCompositeFieldContainer[ExtractedField]
    def __init__(self, fields: _Optional[_Iterable[_Union[ExtractedField, _Mapping]]] = ...) -> None: ...

class Reason(_message.Message):
    __slots__ = ("code", "verifier", "message")
    class Code(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        CODE_UNSPECIFIED: _ClassVar[Reason.Code]
        LOW_CONFIDENCE: _ClassVar[Reason.Code]
        VERIFIER_FAILED: _ClassVar[Reason.Code]
        VERIFIER_ERROR: _ClassVar[Reason.Code]
        OUT_OF_DISTRIBUTION: _ClassVar[Reason.Code]
        UNCALIBRATED: _ClassVar[Reason.Code]
        DRIFT: _ClassVar[Reason.Code]
        TIER_ERROR: _ClassVar[Reason.Code]
        IN_REVIEW: _ClassVar[Reason.Code]
    CODE_UNSPECIFIED: Reason.Code
    LOW_CONFIDENCE: Reason.Code
    VERIFIER_FAILED: Reason.Code
    VERIFIER_ERROR: Reason.Code
    OUT_OF_DISTRIBUTION: Reason.Code
    UNCALIBRATED: Reason.Code
    DRIFT: Reason.Code
    TIER_ERROR: Reason.Code
    IN_REVIEW: Reason.Code
    CODE_FIELD_NUMBER: _ClassVar[int]
    VERIFIER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    code: Reason.Code
    verifier: str
    message: str
    def __init__(self, code: _Optional[_Union[Reason.Code, str]] = ..., verifier: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class VerifierResult(_message.Message):
    __slots__ = ("name", "use", "status", "message", "on_fail", "duration_ms")
    class Status(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATUS_UNSPECIFIED: _ClassVar[VerifierResult.Status]
        PASSED: _ClassVar[VerifierResult.Status]
        FAILED: _ClassVar[VerifierResult.Status]
        ERROR: _ClassVar[VerifierResult.Status]
        SKIPPED: _ClassVar[VerifierResult.Status]
    STATUS_UNSPECIFIED: VerifierResult.Status
    PASSED: VerifierResult.Status
    FAILED: VerifierResult.Status
    ERROR: VerifierResult.Status
    SKIPPED: VerifierResult.Status
    NAME_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    ON_FAIL_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    name: str
    use: str
    status: VerifierResult.Status
    message: str
    on_fail: Decision
    duration_ms: float
    def __init__(self, name: _Optional[str] = ..., use: _Optional[str] = ..., status: _Optional[_Union[VerifierResult.Status, str]] = ..., message: _Optional[str] = ..., on_fail: _Optional[_Union[Decision, str]] = ..., duration_ms: _Optional[float] = ...) -> None: ...

class PredictResponse(_message.Message):
    __slots__ = ("request_id", "model", "model_version", "decision", "classification", "extraction", "confidence", "raw_confidence", "threshold", "reasons", "verifiers", "trace_id", "answered_by", "tiers", "cost", "review_case")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    RAW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    ANSWERED_BY_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    REVIEW_CASE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    model_version: str
    decision: Decision
    classification: Classification
    extraction: Extraction
    confidence: float
    raw_confidence: float
    threshold: float
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierResult]
    trace_id: str
    answered_by: str
    tiers: _containers.RepeatedCompositeFieldContainer[TierResult]
    cost: float
    review_case: int
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., extraction: _Optional[_Union[Extraction, _Mapping]] = ..., confidence: _Optional[float] = ..., raw_confidence: _Optional[float] = ..., threshold: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., verifiers: _Optional[_Iterable[_Union[VerifierResult, _Mapping]]] = ..., trace_id: _Optional[str] = ..., answered_by: _Optional[str] = ..., tiers: _Optional[_Iterable[_Union[TierResult, _Mapping]]] = ..., cost: _Optional[float] = ..., review_case: _Optional[int] = ...) -> None: ...

class TierResult(_message.Message):
    __slots__ = ("name", "kind", "decision", "classification", "extraction", "calibrated", "confidence", "threshold", "reasons", "verifiers", "latency_ms", "cost", "calls")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    LATENCY_MS_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    CALLS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    decision: Decision
    classification: Classification
    extraction: Extraction
    calibrated: bool
    confidence: float
    threshold: float
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierResult]
    latency_ms: float
    cost: float
    calls: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., extraction: _Optional[_Union[Extraction, _Mapping]] = ..., calibrated: _Optional[bool] = ..., confidence: _Optional[float] = ..., threshold: _Optional[float] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., verifiers: _Optional[_Iterable[_Union[VerifierResult, _Mapping]]] = ..., latency_ms: _Optional[float] = ..., cost: _Optional[float] = ..., calls: _Optional[int] = ...) -> None: ...

class ListModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListModelsResponse(_message.Message):
    __slots__ = ("models",)
    MODELS_FIELD_NUMBER: _ClassVar[int]
    models: _containers.RepeatedCompositeFieldContainer[ModelInfo]
    def __init__(self, models: _Optional[_Iterable[_Union[ModelInfo, _Mapping]]] = ...) -> None: ...

class GetModelRequest(_message.Message):
    __slots__ = ("name",)
    NAME_FIELD_NUMBER: _ClassVar[int]
    name: str
    def __init__(self, name: _Optional[str] = ...) -> None: ...

class InputSpec(_message.Message):
    __slots__ = ("name", "kind", "dtype", "shape", "has_range", "min", "max", "max_chars")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[InputSpec.Kind]
        TENSOR: _ClassVar[InputSpec.Kind]
        TEXT: _ClassVar[InputSpec.Kind]
    KIND_UNSPECIFIED: InputSpec.Kind
    TENSOR: InputSpec.Kind
    TEXT: InputSpec.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    HAS_RANGE_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    MAX_CHARS_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: InputSpec.Kind
    dtype: DataType
    shape: _containers.RepeatedScalarFieldContainer[int]
    has_range: bool
    min: float
    max: float
    max_chars: int
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[_Union[InputSpec.Kind, str]] = ..., dtype: _Optional[_Union[DataType, str]] = ..., shape: _Optional[_Iterable[int]] = ..., has_range: _Optional[bool] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., max_chars: _Optional[int] = ...) -> None: ...

class VerifierInfo(_message.Message):
    __slots__ = ("name", "use", "params", "on_fail", "distribution")
    NAME_FIELD_NUMBER: _ClassVar[int]
    USE_FIELD_NUMBER: _ClassVar[int]
    PARAMS_FIELD_NUMBER: _ClassVar[int]
    ON_FAIL_FIELD_NUMBER: _ClassVar[int]
    DISTRIBUTION_FIELD_NUMBER: _ClassVar[int]
    name: str
    use: str
    params: _struct_pb2.Struct
    on_fail: Decision
    distribution: str
    def __init__(self, name: _Optional[str] = ..., use: _Optional[str] = ..., params: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., on_fail: _Optional[_Union[Decision, str]] = ..., distribution: _Optional[str] = ...) -> None: ...

class CalibrationSummary(_message.Message):
    __slots__ = ("calibrated", "method", "metrics_before", "metrics_after", "evaluated_on", "threshold", "guarantee", "fitted_at", "fit_samples", "fields", "simultaneous_statement")
    class MetricsBeforeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricsAfterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: FieldCalibrationSummary
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[FieldCalibrationSummary, _Mapping]] = ...) -> None: ...
    CALIBRATED_FIELD_NUMBER: _ClassVar[int]
    METHOD_FIELD_NUMBER: _ClassVar[int]
    METRICS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    METRICS_AFTER_FIELD_NUMBER: _ClassVar[int]
    EVALUATED_ON_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    FITTED_AT_FIELD_NUMBER: _ClassVar[int]
    FIT_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    SIMULTANEOUS_STATEMENT_FIELD_NUMBER: _ClassVar[int]
    calibrated: bool
    method: str
    metrics_before: _containers.ScalarMap[str, float]
    metrics_after: _containers.ScalarMap[str, float]
    evaluated_on: str
    threshold: float
    guarantee: Guarantee
    fitted_at: str
    fit_samples: int
    fields: _containers.MessageMap[str, FieldCalibrationSummary]
    simultaneous_statement: str
    def __init__(self, calibrated: _Optional[bool] = ..., method: _Optional[str] = ..., metrics_before: _Optional[_Mapping[str, float]] = ..., metrics_after: _Optional[_Mapping[str, float]] = ..., evaluated_on: _Optional[str] = ..., threshold: _Optional[float] = ..., guarantee: _Optional[_Union[Guarantee, _Mapping]] = ..., fitted_at: _Optional[str] = ..., fit_samples: _Optional[int] = ..., fields: _Optional[_Mapping[str, FieldCalibrationSummary]] = ..., simultaneous_statement: _Optional[str] = ...) -> None: ...

class FieldCalibrationSummary(_message.Message):
    __slots__ = ("method", "metrics_before", "metrics_after", "threshold", "guarantee")
    class MetricsBeforeEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    class MetricsAfterEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: float
        def __init__(self, key: _Optional[str] = ..., value: _Optional[float] = ...) -> None: ...
    METHOD_FIELD_NUMBER: _ClassVar[int]
    METRICS_BEFORE_FIELD_NUMBER: _ClassVar[int]
    METRICS_AFTER_FIELD_NUMBER: _ClassVar[int]
    THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    GUARANTEE_FIELD_NUMBER: _ClassVar[int]
    method: str
    metrics_before: _containers.ScalarMap[str, float]
    metrics_after: _containers.ScalarMap[str, float]
    threshold: float
    guarantee: Guarantee
    def __init__(self, method: _Optional[str] = ..., metrics_before: _Optional[_Mapping[str, float]] = ..., metrics_after: _Optional[_Mapping[str, float]] = ..., threshold: _Optional[float] = ..., guarantee: _Optional[_Union[Guarantee, _Mapping]] = ...) -> None: ...

class Guarantee(_message.Message):
    __slots__ = ("target_risk", "delta", "expected_coverage", "samples", "procedure", "statement")
    TARGET_RISK_FIELD_NUMBER: _ClassVar[int]
    DELTA_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_COVERAGE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    PROCEDURE_FIELD_NUMBER: _ClassVar[int]
    STATEMENT_FIELD_NUMBER: _ClassVar[int]
    target_risk: float
    delta: float
    expected_coverage: float
    samples: int
    procedure: str
    statement: str
    def __init__(self, target_risk: _Optional[float] = ..., delta: _Optional[float] = ..., expected_coverage: _Optional[float] = ..., samples: _Optional[int] = ..., procedure: _Optional[str] = ..., statement: _Optional[str] = ...) -> None: ...

class ModelInfo(_message.Message):
    __slots__ = ("name", "version", "kind", "description", "inputs", "labels", "fields", "verifiers", "calibration", "on_low_confidence", "feedback", "drift", "tiers")
    class Kind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        KIND_UNSPECIFIED: _ClassVar[ModelInfo.Kind]
        CLASSIFIER: _ClassVar[ModelInfo.Kind]
        EXTRACTOR: _ClassVar[ModelInfo.Kind]
    KIND_UNSPECIFIED: ModelInfo.Kind
    CLASSIFIER: ModelInfo.Kind
    EXTRACTOR: ModelInfo.Kind
    NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    INPUTS_FIELD_NUMBER: _ClassVar[int]
    LABELS_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    ON_LOW_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    FEEDBACK_FIELD_NUMBER: _ClassVar[int]
    DRIFT_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    name: str
    version: str
    kind: ModelInfo.Kind
    description: str
    inputs: _containers.RepeatedCompositeFieldContainer[InputSpec]
    labels: _containers.RepeatedScalarFieldContainer[str]
    fields: _containers.RepeatedScalarFieldContainer[str]
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierInfo]
    calibration: CalibrationSummary
    on_low_confidence: Decision
    feedback: FeedbackSummary
    drift: DriftStatus
    tiers: _containers.RepeatedCompositeFieldContainer[TierInfo]
    def __init__(self, name: _Optional[str] = ..., version: _Optional[str] = ..., kind: _Optional[_Union[ModelInfo.Kind, str]] = ..., description: _Optional[str] = ..., inputs: _Optional[_Iterable[_Union[InputSpec, _Mapping]]] = ..., labels: _Optional[_Iterable[str]] = ..., fields: _Optional[_Iterable[str]] = ..., verifiers: _Optional[_Iterable[_Union[VerifierInfo, _Mapping]]] = ..., calibration: _Optional[_Union[CalibrationSummary, _Mapping]] = ..., on_low_confidence: _Optional[_Union[Decision, str]] = ..., feedback: _Optional[_Union[FeedbackSummary, _Mapping]] = ..., drift: _Optional[_Union[DriftStatus, _Mapping]] = ..., tiers: _Optional[_Iterable[_Union[TierInfo, _Mapping]]] = ...) -> None: ...

class TierInfo(_message.Message):
    __slots__ = ("name", "kind", "target", "cost", "timeout_ms", "max_concurrency", "answer_uncalibrated", "circuit")
    NAME_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    TARGET_FIELD_NUMBER: _ClassVar[int]
    COST_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    ANSWER_UNCALIBRATED_FIELD_NUMBER: _ClassVar[int]
    CIRCUIT_FIELD_NUMBER: _ClassVar[int]
    name: str
    kind: str
    target: str
    cost: float
    timeout_ms: float
    max_concurrency: int
    answer_uncalibrated: bool
    circuit: str
    def __init__(self, name: _Optional[str] = ..., kind: _Optional[str] = ..., target: _Optional[str] = ..., cost: _Optional[float] = ..., timeout_ms: _Optional[float] = ..., max_concurrency: _Optional[int] = ..., answer_uncalibrated: _Optional[bool] = ..., circuit: _Optional[str] = ...) -> None: ...

class DriftStatus(_message.Message):
    __slots__ = ("state", "message", "reference", "samples", "window", "min_samples", "scores", "escalate_when_drifted")
    class State(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
        __slots__ = ()
        STATE_UNSPECIFIED: _ClassVar[DriftStatus.State]
        OFF: _ClassVar[DriftStatus.State]
        WARMING_UP: _ClassVar[DriftStatus.State]
        WITHIN_LIMITS: _ClassVar[DriftStatus.State]
        DRIFTED: _ClassVar[DriftStatus.State]
    STATE_UNSPECIFIED: DriftStatus.State
    OFF: DriftStatus.State
    WARMING_UP: DriftStatus.State
    WITHIN_LIMITS: DriftStatus.State
    DRIFTED: DriftStatus.State
    STATE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    SAMPLES_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    MIN_SAMPLES_FIELD_NUMBER: _ClassVar[int]
    SCORES_FIELD_NUMBER: _ClassVar[int]
    ESCALATE_WHEN_DRIFTED_FIELD_NUMBER: _ClassVar[int]
    state: DriftStatus.State
    message: str
    reference: str
    samples: int
    window: int
    min_samples: int
    scores: _containers.RepeatedCompositeFieldContainer[DriftScore]
    escalate_when_drifted: bool
    def __init__(self, state: _Optional[_Union[DriftStatus.State, str]] = ..., message: _Optional[str] = ..., reference: _Optional[str] = ..., samples: _Optional[int] = ..., window: _Optional[int] = ..., min_samples: _Optional[int] = ..., scores: _Optional[_Iterable[_Union[DriftScore, _Mapping]]] = ..., escalate_when_drifted: _Optional[bool] = ...) -> None: ...

class DriftScore(_message.Message):
    __slots__ = ("signal", "score", "limit", "past_limit")
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PAST_LIMIT_FIELD_NUMBER: _ClassVar[int]
    signal: str
    score: float
    limit: float
    past_limit: bool
    def __init__(self, signal: _Optional[str] = ..., score: _Optional[float] = ..., limit: _Optional[float] = ..., past_limit: _Optional[bool] = ...) -> None: ...

class FeedbackRequest(_message.Message):
    __slots__ = ("request_id", "model", "label", "fields")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    label: str
    fields: _containers.ScalarMap[str, str]
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., label: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ...) -> None: ...

class FeedbackResponse(_message.Message):
    __slots__ = ("request_id", "model", "model_version", "decision", "correct", "wrong_fields", "counted", "duplicate")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    DECISION_FIELD_NUMBER: _ClassVar[int]
    CORRECT_FIELD_NUMBER: _ClassVar[int]
    WRONG_FIELDS_FIELD_NUMBER: _ClassVar[int]
    COUNTED_FIELD_NUMBER: _ClassVar[int]
    DUPLICATE_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    model: str
    model_version: str
    decision: Decision
    correct: bool
    wrong_fields: _containers.RepeatedScalarFieldContainer[str]
    counted: bool
    duplicate: bool
    def __init__(self, request_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., decision: _Optional[_Union[Decision, str]] = ..., correct: _Optional[bool] = ..., wrong_fields: _Optional[_Iterable[str]] = ..., counted: _Optional[bool] = ..., duplicate: _Optional[bool] = ...) -> None: ...

class AccuracyCheck(_message.Message):
    __slots__ = ("labelled", "observed", "estimated", "gap", "observed_low", "observed_high", "significant", "drifted")
    LABELLED_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    ESTIMATED_FIELD_NUMBER: _ClassVar[int]
    GAP_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_LOW_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_HIGH_FIELD_NUMBER: _ClassVar[int]
    SIGNIFICANT_FIELD_NUMBER: _ClassVar[int]
    DRIFTED_FIELD_NUMBER: _ClassVar[int]
    labelled: int
    observed: float
    estimated: float
    gap: float
    observed_low: float
    observed_high: float
    significant: bool
    drifted: bool
    def __init__(self, labelled: _Optional[int] = ..., observed: _Optional[float] = ..., estimated: _Optional[float] = ..., gap: _Optional[float] = ..., observed_low: _Optional[float] = ..., observed_high: _Optional[float] = ..., significant: _Optional[bool] = ..., drifted: _Optional[bool] = ...) -> None: ...

class FieldAccuracy(_message.Message):
    __slots__ = ("name", "accuracy")
    NAME_FIELD_NUMBER: _ClassVar[int]
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    name: str
    accuracy: AccuracyCheck
    def __init__(self, name: _Optional[str] = ..., accuracy: _Optional[_Union[AccuracyCheck, _Mapping]] = ...) -> None: ...

class FeedbackSummary(_message.Message):
    __slots__ = ("accuracy", "calibration_drifted", "explanation", "fields", "matched", "tolerance", "alpha", "min_labelled", "window")
    ACCURACY_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DRIFTED_FIELD_NUMBER: _ClassVar[int]
    EXPLANATION_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    ALPHA_FIELD_NUMBER: _ClassVar[int]
    MIN_LABELLED_FIELD_NUMBER: _ClassVar[int]
    WINDOW_FIELD_NUMBER: _ClassVar[int]
    accuracy: AccuracyCheck
    calibration_drifted: bool
    explanation: str
    fields: _containers.RepeatedCompositeFieldContainer[FieldAccuracy]
    matched: int
    tolerance: float
    alpha: float
    min_labelled: int
    window: int
    def __init__(self, accuracy: _Optional[_Union[AccuracyCheck, _Mapping]] = ..., calibration_drifted: _Optional[bool] = ..., explanation: _Optional[str] = ..., fields: _Optional[_Iterable[_Union[FieldAccuracy, _Mapping]]] = ..., matched: _Optional[int] = ..., tolerance: _Optional[float] = ..., alpha: _Optional[float] = ..., min_labelled: _Optional[int] = ..., window: _Optional[int] = ...) -> None: ...

class ReviewCase(_message.Message):
    __slots__ = ("id", "request_id", "model", "model_version", "state", "reason", "opened_at", "claimed_by", "lease_until", "closed_by", "closed_at", "text", "inputs_json", "classification", "extraction", "reasons", "verifiers", "tiers", "label", "fields", "note")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    MODEL_VERSION_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    OPENED_AT_FIELD_NUMBER: _ClassVar[int]
    CLAIMED_BY_FIELD_NUMBER: _ClassVar[int]
    LEASE_UNTIL_FIELD_NUMBER: _ClassVar[int]
    CLOSED_BY_FIELD_NUMBER: _ClassVar[int]
    CLOSED_AT_FIELD_NUMBER: _ClassVar[int]
    TEXT_FIELD_NUMBER: _ClassVar[int]
    INPUTS_JSON_FIELD_NUMBER: _ClassVar[int]
    CLASSIFICATION_FIELD_NUMBER: _ClassVar[int]
    EXTRACTION_FIELD_NUMBER: _ClassVar[int]
    REASONS_FIELD_NUMBER: _ClassVar[int]
    VERIFIERS_FIELD_NUMBER: _ClassVar[int]
    TIERS_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: int
    request_id: str
    model: str
    model_version: str
    state: str
    reason: str
    opened_at: float
    claimed_by: str
    lease_until: float
    closed_by: str
    closed_at: float
    text: str
    inputs_json: str
    classification: Classification
    extraction: Extraction
    reasons: _containers.RepeatedCompositeFieldContainer[Reason]
    verifiers: _containers.RepeatedCompositeFieldContainer[VerifierResult]
    tiers: _containers.RepeatedCompositeFieldContainer[TierResult]
    label: str
    fields: _containers.ScalarMap[str, str]
    note: str
    def __init__(self, id: _Optional[int] = ..., request_id: _Optional[str] = ..., model: _Optional[str] = ..., model_version: _Optional[str] = ..., state: _Optional[str] = ..., reason: _Optional[str] = ..., opened_at: _Optional[float] = ..., claimed_by: _Optional[str] = ..., lease_until: _Optional[float] = ..., closed_by: _Optional[str] = ..., closed_at: _Optional[float] = ..., text: _Optional[str] = ..., inputs_json: _Optional[str] = ..., classification: _Optional[_Union[Classification, _Mapping]] = ..., extraction: _Optional[_Union[Extraction, _Mapping]] = ..., reasons: _Optional[_Iterable[_Union[Reason, _Mapping]]] = ..., verifiers: _Optional[_Iterable[_Union[VerifierResult, _Mapping]]] = ..., tiers: _Optional[_Iterable[_Union[TierResult, _Mapping]]] = ..., label: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., note: _Optional[str] = ...) -> None: ...

class ReloadModelsRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListCasesRequest(_message.Message):
    __slots__ = ("state", "model", "reason", "limit", "after_id")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MODEL_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    AFTER_ID_FIELD_NUMBER: _ClassVar[int]
    state: str
    model: str
    reason: str
    limit: int
    after_id: int
    def __init__(self, state: _Optional[str] = ..., model: _Optional[str] = ..., reason: _Optional[str] = ..., limit: _Optional[int] = ..., after_id: _Optional[int] = ...) -> None: ...

class ListCasesResponse(_message.Message):
    __slots__ = ("cases", "counts", "oldest_open_seconds")
    class CountsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    CASES_FIELD_NUMBER: _ClassVar[int]
    COUNTS_FIELD_NUMBER: _ClassVar[int]
    OLDEST_OPEN_SECONDS_FIELD_NUMBER: _ClassVar[int]
    cases: _containers.RepeatedCompositeFieldContainer[ReviewCase]
    counts: _containers.ScalarMap[str, int]
    oldest_open_seconds: float
    def __init__(self, cases: _Optional[_Iterable[_Union[ReviewCase, _Mapping]]] = ..., counts: _Optional[_Mapping[str, int]] = ..., oldest_open_seconds: _Optional[float] = ...) -> None: ...

class GetCaseRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: int
    def __init__(self, id: _Optional[int] = ...) -> None: ...

class ClaimCaseRequest(_message.Message):
    __slots__ = ("id", "reviewer")
    ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    id: int
    reviewer: str
    def __init__(self, id: _Optional[int] = ..., reviewer: _Optional[str] = ...) -> None: ...

class ResolveCaseRequest(_message.Message):
    __slots__ = ("id", "reviewer", "label", "fields", "note")
    class FieldsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    LABEL_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: int
    reviewer: str
    label: str
    fields: _containers.ScalarMap[str, str]
    note: str
    def __init__(self, id: _Optional[int] = ..., reviewer: _Optional[str] = ..., label: _Optional[str] = ..., fields: _Optional[_Mapping[str, str]] = ..., note: _Optional[str] = ...) -> None: ...

class DismissCaseRequest(_message.Message):
    __slots__ = ("id", "reviewer", "note")
    ID_FIELD_NUMBER: _ClassVar[int]
    REVIEWER_FIELD_NUMBER: _ClassVar[int]
    NOTE_FIELD_NUMBER: _ClassVar[int]
    id: int
    reviewer: str
    note: str
    def __init__(self, id: _Optional[int] = ..., reviewer: _Optional[str] = ..., note: _Optional[str] = ...) -> None: ...

class WaitForReviewRequest(_message.Message):
    __slots__ = ("request_id",)
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    request_id: str
    def __init__(self, request_id: _Optional[str] = ...) -> None: ...
