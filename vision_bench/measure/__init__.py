"""Measuring one model: timed runs, the stopping rule, statistics, memory, machine state."""
