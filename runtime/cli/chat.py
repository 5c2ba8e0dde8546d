"""``kubebots chat -f bot.yaml``: an interactive terminal chat with one Bot file."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from ..context import BotContext
from ..errors import ConfigurationError, KubebotsError
from ..manager import BotManager
from ..schema import BotConfig, BotDocument, LLMConfig, load_bot_documents

HELP = "commands: /new (start a new conversation), /history, /quit"


def add_chat_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("chat", help="chat with a Bot file in the terminal")
    p.add_argument("-f", "--filename", required=True, help="a Bot YAML file (kind: Bot)")
    p.add_argument("--name", help="which Bot of the file (default: the first)")
    p.add_argument("--conversation", default="terminal", help="conversation id")
    p.add_argument("--client", default="local", help="client (tenant) id")
    p.add_argument(
        "--llm",
        choices=["auto", "config", "echo"],
        default="auto",
        help="auto: use the file's provider, or echo if its API key is not set",
    )
    p.set_defaults(handler=run_chat)


def pick_document(docs: list[BotDocument], name: str | None) -> BotDocument:
    for doc in docs:
        if name is None or doc.name == name:
            return doc
    raise ConfigurationError(f"no Bot named '{name}' in the file")


def effective_config(config: BotConfig, mode: str, env: Mapping[str, str]) -> tuple[BotConfig, str]:
    """The config to run and a note to print when the LLM was swapped for ``echo``.

    ``auto`` swaps only a Bot whose key is not at hand: one naming ``apiKeyEnv`` that is not set,
    one naming a Secret (``apiKeySecretRef``: read in the cluster, not here) or one using OpenAI
    itself (no ``baseUrl``) without ``OPENAI_API_KEY``. A ``baseUrl`` Bot naming no key source is
    a keyless endpoint (vLLM, Ollama) and runs as it is.
    """
    llm = config.llm
    if mode == "config" or llm.provider == "echo":
        return config, ""
    if llm.api_key_secret_ref is not None:
        missing = "its key is in a Kubernetes Secret (apiKeySecretRef)"
    elif llm.api_key_env is not None or llm.base_url is None:
        variable = llm.api_key_env or "OPENAI_API_KEY"
        missing = "" if env.get(variable) else f"{variable} is not set"
    else:
        missing = ""  # a keyless endpoint
    if mode == "auto" and not missing:
        return config, ""
    note = (
        "note: --llm echo: using the offline echo provider"
        if mode == "echo"
        else (
            f"note: {missing}; using the offline echo provider (--llm config uses the model anyway)"
        )
    )
    return config.model_copy(update={"llm": LLMConfig(provider="echo")}), note


async def chat_loop(
    bot_id: str,
    config: BotConfig,
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    stdin: TextIO,
    stdout: TextIO,
) -> int:
    async with BotManager(env=env) as manager:
        bot = await manager.get_or_create(bot_id, config)
        conversation = args.conversation
        print(
            f"chatting with {bot_id} ({config.llm.provider}/{config.llm.model}); {HELP}",
            file=stdout,
        )
        while True:
            print("you> ", end="", file=stdout, flush=True)
            line = await asyncio.to_thread(stdin.readline)
            if not line:
                return 0
            text = line.strip()
            if not text:
                continue
            if text == "/quit":
                return 0
            context = BotContext(conversation_id=conversation, client_id=args.client)
            if text == "/new":
                conversation = (
                    f"{args.conversation}-{len(await bot.list_conversations(args.client)) + 1}"
                )
                print(f"(new conversation {conversation})", file=stdout)
                continue
            if text == "/history":
                for m in await bot.get_history(context):
                    print(f"  {m.seq:>4} {m.role}: {m.content}", file=stdout)
                continue
            print("bot> ", end="", file=stdout, flush=True)
            try:
                async for delta in bot.stream_chat(text, context):
                    print(delta, end="", file=stdout, flush=True)
            except KubebotsError as exc:
                print(f"\n[error] {type(exc).__name__}: {exc.message}", file=stdout)
                continue
            print(file=stdout)


def run_chat(args: argparse.Namespace, env: Mapping[str, str]) -> int:
    try:
        doc = pick_document(load_bot_documents(args.filename), args.name)
    except ConfigurationError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: cannot read {args.filename} ({exc.strerror})", file=sys.stderr)
        return 1
    config, note = effective_config(doc.spec, args.llm, env)
    if note:
        print(note, file=sys.stderr)
    try:
        return asyncio.run(
            chat_loop(doc.name, config, args, env, stdin=sys.stdin, stdout=sys.stdout)
        )
    except KeyboardInterrupt:
        return 130
    except KubebotsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
