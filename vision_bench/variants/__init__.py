"""Deploy-time variants: their registry, their parity with the reference, their timed pass."""
