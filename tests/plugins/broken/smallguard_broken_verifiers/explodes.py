"""A plugin module whose import fails, as one with a missing dependency would."""

raise ImportError("smallguard_broken_verifiers needs a library that is not installed")
