"""--batch-sizes and --input-sizes: how a model's cost grows."""
