"""The alarm evaluator: partitioned alarm evaluation with exactly-once transitions."""
