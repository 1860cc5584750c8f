"""The Predict path, protocol-neutral, run on every request: ``guard`` (the facade and the path top
to bottom), ``inputs`` (checks against the bundle's declared inputs), ``classifier`` and ``extractor``
(the model heads: model run and calibration), ``verifier_runner`` (verifiers under their time
budget), ``policy`` (the decision rules), ``models`` (the served models by name)."""
