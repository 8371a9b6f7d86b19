"""Small shared helpers (files, servers) used across the package."""
