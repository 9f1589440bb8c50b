"""Importing Paymaster loads neither SDK (each takes a second or more) and needs no configuration."""

from __future__ import annotations

import subprocess
import sys


def test_importing_paymaster_loads_no_provider_sdk() -> None:
    code = (
        "import sys, paymaster\n"
        "from paymaster.providers import AnthropicProvider, OpenAIProvider\n"
        "assert not {'anthropic', 'openai'} & set(sys.modules), sorted({'anthropic', 'openai'} & set(sys.modules))\n"
    )
    env = {"PATH": "", "HOME": "/nonexistent"}  # no keys, no base URLs, no SDK config
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=120)
