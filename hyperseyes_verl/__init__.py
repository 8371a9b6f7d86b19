"""HyperEyes on verl."""
__version__ = "0.1.0"
