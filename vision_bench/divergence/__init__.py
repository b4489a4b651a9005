"""--divergence: where a variant leaves the reference, layer by layer."""
