"""The one place the service is put together, from the settings: used by ``smallguard serve``,
``smallguard evaluate``, the benchmarks and the tests.

Every collaborator is built here and passed in explicitly; defaults live in ``Settings`` alone.
The metric gauges that read the drift monitors and the feedback tallies are registered here,
once, and nowhere as a side effect of a constructor.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Sequence
from pathlib import Path

from opentelemetry.metrics import MeterProvider

from smallguard.server.bundle.loader import bundle_folders, load_bundle
from smallguard.server.core.bundle_tier import BundleTier
from smallguard.server.core.cascade import Cascade
from smallguard.server.core.guard import Guard
from smallguard.server.core.models import LoadedModel, ModelRepository
from smallguard.server.core.pauses import GcPauses
from smallguard.server.core.review import ReviewQueue, ReviewTier
from smallguard.server.core.tiers import Tier
from smallguard.server.core.verifier_runner import VerifierRunner
from smallguard.server.domain.errors import BundleError
from smallguard.server.domain.tier_spec import BundleTarget, TierSpec
from smallguard.server.observability.feedback import Feedback
from smallguard.server.observability.histograms import OwnHistograms
from smallguard.server.observability.instruments import GuardMetrics
from smallguard.server.observability.telemetry import configure_metrics, tracing_enabled
from smallguard.server.settings import Settings
from smallguard.server.store import DecisionLog, default_store_url, open_store
from smallguard.server.store.review_cases import ReviewCases
from smallguard.server.transport.guard_tier import GuardTier
from smallguard.server.transport.server import Companion, GuardServer
from smallguard.verifiers import VerifierRegistry

log = logging.getLogger(__name__)


def load_repository(root: Path, registry: VerifierRegistry, intra_op_threads: int) -> ModelRepository:
    """Every bundle of the model repository ``root``: at least one, all or nothing."""
    folders = bundle_folders(root)
    if not folders:
        raise BundleError("no bundles found: expected sub-folders holding a bundle.yaml", root)
    return load_models(folders, registry, intra_op_threads)


def load_models(folders: Sequence[Path], registry: VerifierRegistry, intra_op_threads: int) -> ModelRepository:
    """Load, check and warm up these bundle folders, all or nothing; names must be unique."""
    models: dict[str, LoadedModel] = {}
    for folder in folders:
        model = LoadedModel.ready(load_bundle(folder, registry, intra_op_threads))
        name = model.spec.name
        if name in models:
            raise BundleError(f"model name {name!r} is already used by {models[name].spec.file}", model.spec.file)
        models[name] = model
        log.info("loaded model %s %s from %s", name, model.spec.version, folder)
    return ModelRepository(models)


def build_guard(settings: Settings, *, registry: VerifierRegistry | None = None,
                meter_provider: MeterProvider | None = None, bundles: Sequence[Path] | None = None,
                keep_feedback: bool = True, own_histograms: OwnHistograms | None = None) -> Guard:
    """Discover verifiers and load the bundles: the core, ready for any transport.

    ``bundles``: these bundle folders instead of every bundle of the model repository.
    ``meter_provider``: where metrics go (None: nowhere); ``own_histograms``: its reader's, when that reader takes
    the per-prediction histograms aggregated by the guard (the Prometheus endpoint alone). ``keep_feedback``: log
    every decision to the store, which the Feedback call matches (a server does; an offline replay need not).
    """
    registry = VerifierRegistry.discover() if registry is None else registry
    if settings.decision_log_capacity < 1 or settings.store_retention_days <= 0:
        raise ValueError(f"--decision-log-capacity must be >= 1 and --store-retention-days > 0, got "
                         f"{settings.decision_log_capacity} and {settings.store_retention_days}")
    threads = settings.intra_op_threads
    repository = (load_repository(settings.model_repository, registry, threads) if bundles is None
                  else load_models(bundles, registry, threads))
    metrics = GuardMetrics.from_provider(meter_provider, own_histograms)
    feedback = decisions = review = None
    if keep_feedback:
        store = open_store(settings.store or default_store_url())
        decisions = DecisionLog(store, capacity=settings.decision_log_capacity,
                                retention_days=settings.store_retention_days)
        feedback = Feedback(repository.specs(), metrics, store, decisions)
        review = ReviewQueue(ReviewCases(store), feedback, repository.specs(), metrics)
        metrics.watch_feedback(feedback.summaries)
        metrics.watch_decision_log(decisions)
        metrics.watch_review_queue(review.counts)
    pauses = GcPauses()
    pauses.install()
    runner = VerifierRunner(settings.verifier_threads, pauses)
    cascades = build_cascades(repository, runner, metrics, review)
    guard = Guard(repository, runner, metrics, feedback, cascades, decisions, review)
    metrics.watch_drift(guard.drift_monitors)
    metrics.watch_circuits(guard.circuits)
    return guard


def reload_models(guard: Guard, settings: Settings, registry: VerifierRegistry | None = None) -> list[str]:
    """Load the model repository again and serve it, all or nothing: a bundle that does not load (BundleError,
    naming it) leaves the models served as they were. Verifier plugins are discovered again, so a newly
    installed one can be used. The names of the models served now."""
    registry = VerifierRegistry.discover() if registry is None else registry
    repository = load_repository(settings.model_repository, registry, settings.intra_op_threads)
    runner, metrics, review = guard.parts()
    cascades = build_cascades(repository, runner, metrics, review)
    guard.replace_models(repository, cascades)
    names = [model.spec.name for model in repository]
    log.info("reloaded %d model(s) from %s: %s", len(names), settings.model_repository,
             ", ".join(f"{m.spec.name} {m.spec.version}" for m in repository))
    return names


def build_cascades(repository: ModelRepository, runner: VerifierRunner, metrics: GuardMetrics,
                   review: ReviewQueue | None = None) -> dict[str, Cascade]:
    """Every bundle's escalation tiers, checked: a bundle tier must name another loaded bundle that takes the
    same inputs and gives what this bundle gives, and bundles must not escalate to each other in a cycle.
    ``review``: the queue a ``review`` tier opens cases in (None: such tiers open none)."""
    _refuse_cycles(repository)
    cascades: dict[str, Cascade] = {}
    made: list[Tier] = []  # closed (their connections) if a later tier is refused
    try:
        for model in repository:
            tiers: list[Tier] = []
            for spec in model.spec.escalation:
                if spec.kind == "review":
                    if review is not None:  # an offline replay keeps no queue: the cascade ends before it
                        tiers.append(ReviewTier(spec, review))
                    continue
                tiers.append(_tier(spec, model, repository))
                made.append(tiers[-1])
            if tiers:
                cascades[model.spec.name] = Cascade(model, tiers, runner, metrics)
    except BaseException:
        for tier in made:
            tier.close()
        raise
    return cascades


def _tier(spec: TierSpec, model: LoadedModel, repository: ModelRepository) -> Tier:
    bundle = model.spec
    if spec.kind == "guard":
        return GuardTier(spec, bundle)
    if spec.kind == "openai":
        from smallguard.server.transport.openai_tier import OpenAITier  # httpx, only for bundles that use it
        return OpenAITier(spec, bundle)
    assert isinstance(spec.target, BundleTarget)
    where = f"escalation tier {spec.name!r}"
    try:
        other = repository.get(spec.target.bundle, spec.target.version)
    except Exception as error:
        raise BundleError(f"{where}: {error}", bundle.file) from None
    theirs = other.spec
    if theirs.kind is not bundle.kind:
        raise BundleError(f"{where}: bundle {theirs.name} is a {theirs.kind.value}, this one a {bundle.kind.value}",
                          bundle.file)
    if [(i.name, i.kind, i.dtype, i.shape) for i in theirs.inputs] != [(i.name, i.kind, i.dtype, i.shape)
                                                                         for i in bundle.inputs]:
        raise BundleError(f"{where}: bundle {theirs.name} takes other inputs than this bundle; a tier is given "
                          "the request as it came", bundle.file)
    if not set(theirs.labels) <= set(bundle.labels):
        raise BundleError(f"{where}: bundle {theirs.name} has labels this bundle does not have: "
                          f"{sorted(set(theirs.labels) - set(bundle.labels))}", bundle.file)
    if not set(bundle.fields) <= set(theirs.fields):
        raise BundleError(f"{where}: bundle {theirs.name} does not extract the fields "
                          f"{[f for f in bundle.fields if f not in theirs.fields]}", bundle.file)
    return BundleTier(spec, other, bundle.fields)


def _refuse_cycles(repository: ModelRepository) -> None:
    """BundleError when bundles escalate to each other in a cycle (each would wait on the other for ever)."""
    edges = {m.spec.name: [t.target.bundle for t in m.spec.escalation if isinstance(t.target, BundleTarget)]
             for m in repository}
    files = {m.spec.name: m.spec.file for m in repository}

    def visit(name: str, path: list[str]) -> None:
        for nxt in edges.get(name, ()):
            if nxt in path:
                cycle = [*path[path.index(nxt):], nxt]
                raise BundleError(f"escalation: the bundles escalate in a cycle, {' -> '.join(cycle)}; a tier must "
                                  "be a stronger model that does not escalate back", files[cycle[0]])
            visit(nxt, [*path, nxt])

    for name in edges:
        visit(name, [name])


def create_server(settings: Settings, *, registry: VerifierRegistry | None = None,
                  meter_provider: MeterProvider | None = None) -> GuardServer:
    """The guard behind a gRPC server bound to its port (not yet started).

    Each call gets a server span when a tracer provider is installed (``configure_tracing``); metrics go
    to ``meter_provider`` when one is given (the caller owns it: no endpoint is opened
    and nothing is shut down); otherwise to the exporters that ``--metrics-port`` and the OTEL_*
    environment ask for, owned by the server, or nowhere when they ask for none.
    """
    small = [f"--{name.replace('_', '-')}={getattr(settings, name)}" for name in
             ("verifier_threads", "max_batch_items", "max_request_bytes", "max_concurrent_rpcs")
             if getattr(settings, name) < 1]
    if small:
        raise ValueError(f"{', '.join(small)}: expected a whole number of at least 1")
    export = configure_metrics(settings) if meter_provider is None else None
    provider = export.provider if export is not None else meter_provider
    guard = None
    try:
        guard = build_guard(settings, registry=registry, meter_provider=provider,
                            own_histograms=export.own_histograms if export is not None else None)
        server = GuardServer(guard, settings, export, tracing=tracing_enabled(),
                             reload=lambda: reload_models(guard, settings, registry))
        if settings.console_port:
            server.companions.append(build_console(guard, server, settings))
        return server
    except BaseException:
        if guard is not None:
            guard.close()
        if export is not None:
            export.shutdown()
        raise


def build_console(guard: Guard, server: GuardServer, settings: Settings) -> Companion:
    """The review console on --console-port, behind the server's tokens (those holding the ``review`` role) or,
    when it has none, a token of the console's own, logged once at start-up for the operator to hand out. Its web
    stack is imported only here: a server without a console does not carry it."""
    from smallguard.server.console import ConsoleServer, Login, console_app

    auth = server.auth
    if auth is not None:
        def check(token: str) -> str | None:
            holder = auth.holder(token)
            return holder.name if holder is not None and holder.roles & {"review", "admin"} else None
        login = Login(check)
    else:
        token = secrets.token_urlsafe(24)
        login = Login.shared(token)
    console = ConsoleServer(console_app(guard.review, guard.specs, login), settings.console_host,
                            settings.console_port)
    if auth is None:
        log.warning("review console: log in at http://%s:%d/login with the token %s (no --tokens-file: this token, "
                    "new at every start, is the console's only one)", settings.console_host, console.port, token)
    return console
