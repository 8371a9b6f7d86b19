"""Driving a served model through the search environment: the episode runner shared by Progressive Rejection
Sampling and evaluation (the HTTP client it talks through is `hyperseyes_verl.utils.openai_chat`)."""
