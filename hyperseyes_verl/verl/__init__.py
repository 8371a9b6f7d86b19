"""verl adapters."""
