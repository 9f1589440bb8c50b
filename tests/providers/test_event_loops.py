"""One provider serves many event loops: ``Runtime.run_sync`` starts a new loop per run."""

from __future__ import annotations

import gc
from pathlib import Path

import anyio
import pytest

from paymaster import Agent, Runtime, TaskStatus
from paymaster.providers import AnthropicProvider, Message, ModelRequest, OpenAIProvider

from .loopback import ANTHROPIC_KEY, OPENAI_KEY, LoopbackServer, Reply, chat_completion, claude_message

REQUEST = ModelRequest(model="gpt-4o-mini", messages=(Message(role="user", content="Hi"),), max_tokens=8)


def _providers(server: LoopbackServer) -> list[tuple[AnthropicProvider | OpenAIProvider, dict[str, object]]]:
    return [
        (AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url), claude_message()),
        (OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1"), chat_completion()),
    ]


def test_closing_in_each_loop_serves_every_loop(server: LoopbackServer) -> None:
    for provider, body in _providers(server):

        async def call_and_close(p: AnthropicProvider | OpenAIProvider = provider) -> str:
            try:
                return (await p.complete(REQUEST)).text
            finally:
                await p.aclose()

        server.reply(*(Reply(200, body) for _ in range(3)))
        assert [anyio.run(call_and_close) for _ in range(3)] == ["Hello!"] * 3
        assert provider._clients._by_loop == {}


# Clients left open by ended loops are dropped unclosed; their sockets close, with a ResourceWarning, when
# garbage collected. Collect here so that the warning is this test's, not a later one's.
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_without_closing_a_new_loop_gets_a_new_client_and_ended_ones_are_dropped(server: LoopbackServer) -> None:
    def four_runs() -> None:
        for provider, body in _providers(server):
            server.reply(*(Reply(200, body) for _ in range(4)))
            # Pooled connections belong to the loop that opened them: reusing one from a later loop would fail.
            assert [anyio.run(provider.complete, REQUEST).text for _ in range(4)] == ["Hello!"] * 4
            assert len(provider._clients._by_loop) == 1  # only the last loop's client is kept

    four_runs()
    gc.collect()


@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_run_sync_twice_through_real_providers(server: LoopbackServer, tmp_path: Path) -> None:
    class Refunds(Agent):
        name = "refunds"

    def two_runs() -> None:
        claude = AnthropicProvider(api_key=ANTHROPIC_KEY, base_url=server.url)
        gpt = OpenAIProvider(api_key=OPENAI_KEY, base_url=f"{server.url}/v1")
        server.reply(Reply(200, claude_message()), Reply(200, claude_message()))
        with Runtime(ledger=tmp_path / "ledger.db", providers={"anthropic": claude, "openai": gpt}) as runtime:
            outcomes = [runtime.run_sync(Refunds, "Refund order 1234") for _ in range(2)]
        assert [(o.status, o.output) for o in outcomes] == [(TaskStatus.SUCCEEDED, "Hello!")] * 2

    two_runs()
    gc.collect()
