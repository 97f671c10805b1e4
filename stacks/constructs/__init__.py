"""Small constructs that TrainingStack (and later stacks) compose, one concept per file."""
