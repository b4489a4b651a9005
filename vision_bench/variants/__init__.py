"""Deploy-time variants: their interface (base), one module per variant, the registry that lists
them, their parity with the reference, their timed pass and their report sections."""
