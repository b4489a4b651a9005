"""Running models: all in order or over --devices, the worker processes, --processes K, --shard."""
