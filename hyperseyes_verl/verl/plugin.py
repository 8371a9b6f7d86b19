"""Registers hyperseyes components in every verl process (entry point group verl.plugins)."""
