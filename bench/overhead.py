"""A one-call task, end to end: Paymaster beside Pydantic AI and the OpenAI Agents SDK, in one process.

Each framework runs the same task with a zero-latency model: Paymaster with a
durable SQLite ledger and a USD cap (open the task, reserve, call, settle,
close it); Pydantic AI's ``Agent.run`` on a ``FunctionModel``; the OpenAI
Agents SDK's ``Runner.run`` on a fake ``Model``. Rounds are interleaved so that
machine noise hits every framework alike. The peers keep no ledger and reserve
nothing. Prints p50/p90/p99 per framework and the ratios; ``--markdown FILE``
appends a table. Peers missing (pip install -e '.[bench]') are skipped.

    python bench/overhead.py --tasks 2000
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

from paymaster import Agent, Budget, Runtime, ScriptedProvider, Usage

Runner = Callable[[str], Awaitable[object]]


class Echo(Agent):
    name = "echo"
    budget = Budget(usd="1")


def paymaster_runner(ledger: Path) -> tuple[Runner, Callable[[], None]]:
    provider = ScriptedProvider(lambda request: "ok", usage=Usage(input_tokens=12, output_tokens=2), record=False)
    rt = Runtime(ledger=ledger, provider=provider)

    async def run(prompt: str) -> object:
        outcome = await rt.run(Echo, prompt)
        assert outcome.status.value == "succeeded", outcome.stop_reason
        return outcome

    return run, rt.close


def pydantic_ai_runner() -> Runner | None:
    try:
        from pydantic_ai import Agent as PAgent
        from pydantic_ai.messages import ModelMessage, ModelResponse, TextPart
        from pydantic_ai.models.function import AgentInfo, FunctionModel
    except ImportError:
        return None

    def reply(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        return ModelResponse(parts=[TextPart("ok")])

    agent = PAgent(FunctionModel(reply), instructions="Answer.")

    async def run(prompt: str) -> object:
        return await agent.run(prompt)

    return run


def openai_fake_agent(latency: float = 0.0, input_tokens: int = 12, output_tokens: int = 2) -> Any:
    """An OpenAI Agents SDK agent on a fake ``Model`` that answers "ok" after ``latency`` s; None if not installed."""
    try:
        from agents import Agent as OAgent
        from agents import Model, ModelResponse, set_tracing_disabled
        from agents import Usage as OUsage
        from openai.types.responses import ResponseOutputMessage, ResponseOutputText
    except ImportError:
        return None
    set_tracing_disabled(True)

    class Fake(Model):  # type: ignore[misc]
        async def get_response(self, *args: Any, **kwargs: Any) -> ModelResponse:
            if latency:
                await anyio.sleep(latency)
            text = ResponseOutputText(text="ok", type="output_text", annotations=[])
            message = ResponseOutputMessage(id="m", content=[text], role="assistant", status="completed",
                                            type="message")
            return ModelResponse(output=[message], usage=OUsage(requests=1, input_tokens=input_tokens,
                                                               output_tokens=output_tokens,
                                                               total_tokens=input_tokens + output_tokens),
                                 response_id=None)

        def stream_response(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

    return OAgent(name="echo", instructions="Answer.", model=Fake())


def openai_agents_runner() -> Runner | None:
    agent = openai_fake_agent()
    if agent is None:
        return None
    from agents import Runner as ORunner

    async def run(prompt: str) -> object:
        return await ORunner.run(agent, prompt)

    return run


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(runners: dict[str, Runner], tasks: int, warmup: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {name: [] for name in runners}
    for i in range(warmup + tasks):
        for name, run in runners.items():  # interleaved: one task of each per round
            started = time.perf_counter()
            await run(f"Say ok {i}.")
            if i >= warmup:
                times[name].append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--markdown", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        pm, close = paymaster_runner(Path(tmp) / "ledger.db")
        runners: dict[str, Runner] = {"Paymaster (SQLite ledger, USD cap)": pm}
        for name, make in (("Pydantic AI Agent.run", pydantic_ai_runner),
                           ("OpenAI Agents SDK Runner.run", openai_agents_runner)):
            made = make()
            if made is None:
                print(f"skipped {name}: not installed (pip install -e '.[bench]')")
            else:
                runners[name] = made
        times = anyio.run(measure, runners, args.tasks, args.warmup)
        close()
    p50 = {n: statistics.median(t) for n, t in times.items()}
    rows = ["| framework | p50 ms | p90 ms | p99 ms | p50 vs Paymaster |", "|---|---|---|---|---|"]
    ours = p50["Paymaster (SQLite ledger, USD cap)"]
    for name, t in times.items():
        rows.append(f"| {name} | {p50[name]:.3f} | {pct(t, 0.9):.3f} | {pct(t, 0.99):.3f} | "
                    f"{p50[name] / ours:.2f}x |")
    table = "\n".join(rows)
    print(table)
    if args.markdown is not None:
        with args.markdown.open("a") as out:
            out.write(f"\n### One-call task overhead ({args.tasks} tasks per framework, interleaved)\n\n{table}\n")


if __name__ == "__main__":
    main()
