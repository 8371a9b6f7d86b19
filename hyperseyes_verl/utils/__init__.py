"""Small shared helpers used across the package: files, images, configs, and the OpenAI-compatible chat client
(`openai_chat`, `openai_preflight`) that the runner, the LLM judge, PRS and eval all talk through."""
