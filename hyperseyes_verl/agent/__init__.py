"""Driving a served model through the search environment: OpenAI-compatible client + episode runner
(shared by Progressive Rejection Sampling and evaluation)."""
