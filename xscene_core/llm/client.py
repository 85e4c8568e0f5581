"""An OpenAI-compatible chat client that returns checked JSON: any local server (vLLM, llama.cpp,
Ollama, LM Studio) or a hosted API, chosen by configuration.

`LLMClient.complete_json(system, user, validate)`:
1. sends the system prompt and the user message;
2. retries timeouts, connection errors, HTTP 429 and 5xx up to `max_retries` times with exponential
   backoff (other HTTP errors, e.g. a wrong key or model, fail at once);
3. reads the answer as JSON (tolerating code fences and prose around one object) and validates it;
4. if that fails, does ONE repair round: sends the answer back with the error and asks again;
5. raises `LLMError` with a clear message when anything still fails.
"""

from __future__ import annotations

import json
import os
import re
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, TypeVar

from .prompts import repair_message

T = TypeVar("T")
ENV_BASE_URL, ENV_MODEL, ENV_API_KEY = "XSCENE_LLM_BASE_URL", "XSCENE_LLM_MODEL", "XSCENE_LLM_API_KEY"
ENV_TIMEOUT, ENV_RETRIES = "XSCENE_LLM_TIMEOUT_S", "XSCENE_LLM_MAX_RETRIES"
NO_KEY = "not-needed"  # local servers ignore the key, but the openai client refuses an empty one


class LLMError(RuntimeError):
    """The LLM endpoint could not give a valid answer (unreachable, refused, timed out, or invalid twice)."""


@dataclass(frozen=True)
class LLMConfig:
    """Where and how to ask an OpenAI-compatible chat endpoint.

    base_url: e.g. "http://127.0.0.1:8000/v1"; model: the model name the server expects; api_key: sent
    as a bearer token; timeout_s: seconds one request may take; max_retries: extra attempts after a
    timeout, connection error, 429 or 5xx; backoff_s: wait before the first retry (doubling after);
    temperature: sampling temperature; json_mode: also send response_format {"type": "json_object"}
    (most servers support it; off by default because some reject the field).
    """

    base_url: str
    model: str
    api_key: str = field(default=NO_KEY, repr=False)  # never printed into logs
    timeout_s: float = 60.0
    max_retries: int = 2
    backoff_s: float = 1.0
    temperature: float = 0.2
    json_mode: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.base_url, str) or not re.match(r"^https?://", self.base_url):
            raise ValueError(f"LLMConfig.base_url must be an http(s) URL, got {self.base_url!r}")
        if not isinstance(self.model, str) or not self.model.strip():
            raise ValueError("LLMConfig.model must name the model the server serves")
        if not self.timeout_s > 0:
            raise ValueError(f"LLMConfig.timeout_s must be positive, got {self.timeout_s}")
        if int(self.max_retries) != self.max_retries or self.max_retries < 0:
            raise ValueError(f"LLMConfig.max_retries must be a non-negative integer, got {self.max_retries}")
        if self.backoff_s < 0:
            raise ValueError(f"LLMConfig.backoff_s must be >= 0, got {self.backoff_s}")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "LLMConfig | None":
        """The config from XSCENE_LLM_BASE_URL / _MODEL / _API_KEY (and optional _TIMEOUT_S /
        _MAX_RETRIES), or None when no base URL is set (the caller then takes the offline path).
        Raises ValueError when a base URL is set but the model or a number is missing or malformed."""
        env = os.environ if env is None else env
        base_url = env.get(ENV_BASE_URL, "").strip()
        if not base_url:
            return None
        model = env.get(ENV_MODEL, "").strip()
        if not model:
            raise ValueError(f"{ENV_BASE_URL} is set but {ENV_MODEL} is not; name the model the server serves")
        kwargs: dict[str, Any] = {}
        for key, name, kind in ((ENV_TIMEOUT, "timeout_s", float), (ENV_RETRIES, "max_retries", int)):
            if env.get(key, "").strip():
                try:
                    kwargs[name] = kind(env[key])
                except ValueError:
                    what = "a number" if kind is float else "an integer"
                    raise ValueError(f"{key} must be {what}, got {env[key]!r}") from None
        return cls(base_url, model, env.get(ENV_API_KEY, "").strip() or NO_KEY, **kwargs)


_FENCE = re.compile(r"^```[a-zA-Z]*\s*\n?(.*?)\n?```$", re.S)


def extract_json(text: str) -> Any:
    """The JSON value of an answer text: the whole text, else inside a ``` fence, else the span from the
    first "{" to the last "}" (models often add a sentence around the object). Raises ValueError."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the answer is empty; it must be one JSON object")
    text = text.strip()
    candidates = [text]
    fence = _FENCE.match(text)
    if fence:
        candidates.append(fence.group(1))
    if "{" in text and "}" in text:
        candidates.append(text[text.index("{"): text.rindex("}") + 1])
    error = None
    for c in candidates:
        try:
            return json.loads(c)
        except json.JSONDecodeError as e:
            error = error or e
    raise ValueError(f"the answer is not valid JSON ({error.msg} at line {error.lineno} column {error.colno})")


def _reason(error) -> str:
    """The server's own words for an HTTP error (OpenAI-style {"error": {"message": ...}} bodies)."""
    body = error.body
    if isinstance(body, dict) and isinstance(body.get("message"), str):
        return body["message"]
    return str(body) if body else error.message


class LLMClient:
    """A chat client for one endpoint (see LLMConfig)."""

    def __init__(self, config: LLMConfig) -> None:
        from openai import OpenAI  # imported here: the offline path never pays for it

        self.config = config
        # retries are ours (to bound them and to report them clearly), so the client's own are off
        self._client = OpenAI(base_url=config.base_url, api_key=config.api_key, timeout=config.timeout_s,
                              max_retries=0)

    def _where(self) -> str:
        return f"LLM endpoint {self.config.base_url} (model {self.config.model})"

    def chat(self, messages: list[dict[str, str]]) -> str:
        """The text of one chat completion ("" when the server sends no content).

        Retries transient failures (timeout, connection error, HTTP 429 / 5xx) up to max_retries times;
        raises LLMError after the last attempt or at once on any other HTTP error."""
        import openai

        cfg = self.config
        extra: dict[str, Any] = {"response_format": {"type": "json_object"}} if cfg.json_mode else {}
        attempts = 1 + int(cfg.max_retries)
        last = ""
        for attempt in range(attempts):
            try:
                resp = self._client.chat.completions.create(model=cfg.model, messages=messages,
                                                            temperature=cfg.temperature, **extra)
            except openai.APITimeoutError:
                last = f"no answer within the timeout of {cfg.timeout_s:g} s"
            except openai.APIConnectionError as e:
                last = f"cannot connect ({e.__cause__ or e})"
            except openai.APIStatusError as e:
                if e.status_code != 429 and e.status_code < 500:
                    raise LLMError(f"{self._where()} refused the request with HTTP {e.status_code}: {_reason(e)}") from e
                last = f"HTTP {e.status_code}: {_reason(e)}"
            except openai.APIError as e:  # e.g. a body that is not a chat completion
                raise LLMError(f"{self._where()} sent an unreadable response: {e}") from e
            else:
                if not resp.choices:
                    return ""
                return resp.choices[0].message.content or ""
            if attempt + 1 < attempts:
                time.sleep(cfg.backoff_s * 2**attempt)
        raise LLMError(f"{self._where()} failed after {attempts} attempt{'s' if attempts != 1 else ''}: {last}")

    def complete_json(self, system: str, user: str, validate: Callable[[Any], T]) -> T:
        """Ask for a JSON answer and return validate(answer).

        system, user: the two messages; validate: takes the parsed JSON value and returns the typed
        result or raises ValueError with a message the model can act on. One repair round follows an
        invalid answer; raises LLMError if the repaired answer is invalid too (or the endpoint fails)."""
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        text = self.chat(messages)
        try:
            return validate(extract_json(text))
        except ValueError as e:
            first = str(e)
        repair = messages + [{"role": "assistant", "content": text}, {"role": "user", "content": repair_message(first)}]
        text = self.chat(repair)
        try:
            return validate(extract_json(text))
        except ValueError as e:
            raise LLMError(f"{self._where()} gave an invalid answer twice. First: {first}. "
                           f"After the repair round: {e}") from None
