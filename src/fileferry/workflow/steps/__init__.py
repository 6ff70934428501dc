"""The workflow's steps: pure async functions ``step(input_model, deps) -> output_model``."""
