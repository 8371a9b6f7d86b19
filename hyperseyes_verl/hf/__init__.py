"""Local HF-transformers models on CPU: loading, sampling with log-probs, teacher scoring (`generation`), and an
OpenAI-compatible chat server over a checkpoint folder (`chat_server`, `hyperseyes serve-model`). Never imports
verl: the CPU runtime's rollout adapter (`hyperseyes_verl/verl/cpu`) builds on it."""
