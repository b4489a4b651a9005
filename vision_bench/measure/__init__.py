"""One model's measured pass: timed runs, the stopping rule, statistics, memory, machine state."""
