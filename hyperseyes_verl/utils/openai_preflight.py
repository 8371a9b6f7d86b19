"""One request before a long run: is the endpoint up, OpenAI-compatible, and serving this model?

Without it a down server, a URL missing `/v1` or a wrong model name fails every item one by one and the run
ends with a 0 % report. `preflight` sends one one-token chat request and turns a failure into a sentence that
names the URL, what the server said, and what to change.
"""
from __future__ import annotations

from urllib.parse import urlparse

from hyperseyes_verl.utils.openai_chat import EndpointError


class PreflightError(RuntimeError):
    """The endpoint cannot serve the run; the message says why and what to do."""


def explain(e: EndpointError, base_url: str, model: str) -> str:
    url = base_url.rstrip("/")
    body = e.message
    if e.kind == "refused":
        return (f"nothing answers at {url} ({body}): start the server (e.g. `vllm serve CKPT --port 8000`) "
                f"or fix --endpoint")
    if e.kind == "timeout":
        return f"{url} did not reply ({body}): is the server still loading the model? Raise --timeout or retry"
    if e.status in (401, 403):
        return (f"{url} refused the request (HTTP {e.status}): export the API key in the variable named by "
                f"--api-key-env")
    if e.status == 404 and not urlparse(url).path.rstrip("/").endswith("/v1"):
        return (f"{url}/chat/completions does not exist (HTTP 404): OpenAI-compatible servers serve under /v1; "
                f"try --endpoint {url}/v1")
    if e.status in (400, 404) and "model" in body.lower():
        return (f"{url} does not serve model {model!r} ({body}): pass the served name with --model "
                f"(`curl {url}/models` lists them)")
    if e.kind in ("server_error", "rate_limited"):
        return f"{url} fails a one-token request ({body}): check the server's log before starting the run"
    if e.kind == "bad_payload":
        return f"{url} does not reply like an OpenAI chat endpoint ({body}); --endpoint should end in /v1"
    return f"{url} rejects a one-token chat request for model {model!r} ({body})"


async def preflight(client, model: str, base_url: str) -> None:
    """Raise `PreflightError` unless `client` gets a reply for `model` (a one-token request)."""
    try:
        await client.chat(model, [{"role": "user", "content": "Reply with OK."}], max_tokens=1, temperature=0.0)
    except EndpointError as e:
        raise PreflightError(explain(e, base_url, model)) from None
