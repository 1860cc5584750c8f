"""Example verifier plugins: one business rule, and two that misbehave on purpose."""
