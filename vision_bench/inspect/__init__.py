"""Looking inside a model: the layer dissection, the time breakdown, the profiler trace."""
