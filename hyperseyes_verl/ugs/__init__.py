"""Unified Grounded Search: tool schemas, tolerant parser, image registry, and the search environment."""
