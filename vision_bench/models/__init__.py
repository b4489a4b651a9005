"""The model contract (the base class), the library bases, and the images they read."""
