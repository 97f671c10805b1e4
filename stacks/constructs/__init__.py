"""Constructs that the stacks compose, one concept per file: configuration from cdk.json arrives as its
settings section, what the stack creates as plain typed values (docs/stacks.md#how-the-code-is-laid-out)."""
