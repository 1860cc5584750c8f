"""The side channels that watch the guard: OpenTelemetry set-up (``telemetry``), the metric instruments
(``instruments``), live drift against a reference profile (``drift``), and ground-truth feedback
(``feedback``)."""
