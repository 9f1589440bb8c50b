"""A bad base URL fails when the provider is built, as a ConfigurationError that says what to write."""

from __future__ import annotations

import pytest

from paymaster.errors import ConfigurationError, ProviderError
from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider

from .loopback import OPENAI_KEY

pytestmark = pytest.mark.anyio

PROVIDERS = [OpenAIProvider, AnthropicProvider]


@pytest.mark.parametrize("cls", PROVIDERS)
@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://127.0.0.1:notaport/v1", "not a valid URL (Port could not be cast to integer value as 'notaport')"),
        ("http://127.0.0.1:99999/v1", "not a valid URL (Port out of range 0-65535)"),
        ("ftp://x", "it must start with http:// or https://"),
        ("not a url", "a URL may not be empty or contain spaces"),
        ("localhost:8000", "it must start with http:// or https://"),
        ("127.0.0.1:8000/v1", "it must start with http:// or https://"),
        ("http://", "it names no host"),
        ("http://[::1/v1", "not a valid URL (Invalid IPv6 URL)"),
        ("", "a URL may not be empty or contain spaces"),
    ],
)
def test_a_bad_base_url_is_refused_at_construction_naming_it_and_what_to_write(
    cls: type[OpenAIProvider | AnthropicProvider], url: str, problem: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        cls(api_key="k" * 8, base_url=url)
    message = str(caught.value)
    assert message.startswith(f"{cls.__name__}(base_url={url!r}): {problem}; ")
    assert "e.g. base_url='http://127.0.0.1:" in message


@pytest.mark.parametrize("cls", PROVIDERS)
def test_credentials_in_a_bad_url_are_not_repeated(cls: type[OpenAIProvider | AnthropicProvider]) -> None:
    with pytest.raises(ConfigurationError) as caught:
        cls(api_key=OPENAI_KEY, base_url=f"http://user:{OPENAI_KEY}@127.0.0.1:port/v1")
    assert OPENAI_KEY not in str(caught.value) and "[REDACTED]" in str(caught.value)


@pytest.mark.parametrize("cls", PROVIDERS)
@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8000/v1", "https://api.example.com", "http://localhost:11434/v1/", "http://[::1]:8080"]
)
def test_good_base_urls_are_kept_as_given(cls: type[OpenAIProvider | AnthropicProvider], url: str) -> None:
    assert cls(api_key="k" * 8, base_url=url).base_url == url


@pytest.mark.parametrize("cls", PROVIDERS)
async def test_an_sdk_that_refuses_its_settings_is_a_configuration_error(
    cls: type[OpenAIProvider | AnthropicProvider], monkeypatch: pytest.MonkeyPatch
) -> None:
    provider = cls(api_key=OPENAI_KEY, base_url="http://127.0.0.1:8000/v1")

    def refuse(**settings: object) -> None:
        raise ValueError(f"unsupported setting for key {settings['api_key']}")

    sdk_class = "AsyncOpenAI" if cls is OpenAIProvider else "AsyncAnthropic"
    monkeypatch.setattr(provider._sdk, sdk_class, refuse)
    request = ModelRequest(model="m", messages=(Message(role="user", content="Hi"),), max_tokens=8)
    with pytest.raises(ConfigurationError, match="SDK refused this provider's settings") as caught:
        await provider.complete(request)
    assert not isinstance(caught.value, ProviderError)  # a fix for the user, not a failed call
    assert OPENAI_KEY not in str(caught.value)
