"""Running models: one model's pass, all models in order or over --devices, the worker processes,
--processes K, --shard."""
