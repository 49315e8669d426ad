"""Speed benchmarks of the recipe; run them from the repository root with `python -m benchmarks.<name>`."""
