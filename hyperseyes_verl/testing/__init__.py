"""Offline stand-ins and helpers for tests, benchmarks and the CPU runtime.

- `fake_chat_server`: a local OpenAI-compatible HTTP chat server with scripted replies (what PRS, eval, synth
  and the LLM judge talk to through `hyperseyes_verl.utils.openai_chat`).
- `fake_search_server`: a fault-injecting stand-in for the web search APIs (Serper, Search-R1).
- `fake_llm_server`: a scripted stand-in for verl's rollout server client (`LLMServerClient.generate`), token ids in
  and out, for the RL agent loop (no HTTP).
- `local_server`: serves any ASGI app on a free local port (the two HTTP fakes above, `serve-model` in the demo).
- `tiny_vl`, `cpu_patches`: tiny random Qwen-VL checkpoints and the processor workaround (also used by the CPU
  training runtime); `chromium`, `verl_suite`: the browser and verl-suite drivers of the test suite.
"""
