"""The model contract (the base class) and the library bases."""
