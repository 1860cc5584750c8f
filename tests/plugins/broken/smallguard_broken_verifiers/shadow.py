"""A verifier that claims the built-in name ``range``, and a constant posing as a factory."""

NOT_A_FACTORY = 42


class Range:
    def check(self, prediction, context):  # careless plugin code, on purpose
        raise AssertionError("never built: the name range is claimed twice")
