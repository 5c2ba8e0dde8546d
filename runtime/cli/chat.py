"""``kubebots chat -f bot.yaml``: an interactive terminal chat with one Bot file."""

from __future__ import annotations

import argparse
import asyncio
import itertools
import sys
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any, TextIO

from ..configstore import DEFAULT_DATA_DIR
from ..context import BotContext
from ..errors import ConfigurationError, KubebotsError
from ..factory import BotFactory
from ..manager import BotManager
from ..schema import BotConfig, BotDocument, LLMConfig, load_bot_documents

HELP = "commands: /help, /new (start a new conversation), /history, /quit (or Ctrl-D, Ctrl-C)"
WAITING = "waiting for the model"
SPINNER = "|/-\\"


def add_chat_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("chat", help="chat with a Bot file in the terminal")
    p.add_argument("-f", "--filename", required=True, help="a Bot YAML file (kind: Bot)")
    p.add_argument("--name", help="which Bot of the file (default: the first)")
    p.add_argument("--conversation", default="terminal", help="conversation id")
    p.add_argument("--client", default="local", help="client (tenant) id")
    p.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="where relative sqlite conversation paths live, as for serve (default .kubebots)",
    )
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


class _Lines:
    """Lines of ``stdin``, read by a daemon thread: a blocked ``readline`` never keeps the
    process alive, so Ctrl-C at the prompt exits at once (a worker thread of the event loop's
    executor would be waited for at shutdown until the next Enter)."""

    def __init__(self, stdin: TextIO) -> None:
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        def read() -> None:
            while True:
                line = stdin.readline()
                loop.call_soon_threadsafe(self._queue.put_nowait, line)
                if not line:
                    return

        threading.Thread(target=read, name="kubebots-chat-stdin", daemon=True).start()

    async def next(self) -> str:
        """The next line, ``""`` at the end of the input."""
        return await self._queue.get()


async def _answer(
    stream: AsyncIterator[str], stdout: TextIO, *, patience: float, interactive: bool
) -> None:
    """Print the bot's answer as it streams; while the first words are late, say so (a spinner
    on a terminal, one line otherwise) instead of looking hung."""
    first = asyncio.ensure_future(anext(stream, None))
    done, _ = await asyncio.wait({first}, timeout=patience)
    if not done and not interactive:
        print(f"({WAITING}...)\nbot> ", end="", file=stdout, flush=True)
    elif not done:
        for tick in itertools.count():
            print(f"\r{WAITING} {SPINNER[tick % 4]}", end="", file=stdout, flush=True)
            done, _ = await asyncio.wait({first}, timeout=0.1)
            if done:
                break
        print("\r" + " " * (len(WAITING) + 2) + "\rbot> ", end="", file=stdout, flush=True)
    delta = await first
    while delta is not None:
        print(delta, end="", file=stdout, flush=True)
        delta = await anext(stream, None)
    print(file=stdout)


async def chat_loop(
    bot_id: str,
    config: BotConfig,
    args: argparse.Namespace,
    env: Mapping[str, str],
    *,
    stdin: TextIO,
    stdout: TextIO,
    patience: float = 1.0,
) -> int:
    """The prompt loop. ``patience``: seconds before a slow model is said to be slow."""
    interactive = stdout.isatty()
    lines = _Lines(stdin)
    factory = BotFactory(env=env, data_dir=Path(args.data_dir))
    async with BotManager(factory=factory) as manager:
        bot = await manager.get_or_create(bot_id, config)
        conversation = args.conversation
        print(
            f"chatting with {bot_id} ({config.llm.provider}/{config.llm.model}); {HELP}",
            file=stdout,
        )
        while True:
            print("you> ", end="", file=stdout, flush=True)
            line = await lines.next()
            if not line:
                print(file=stdout)
                return 0
            text = line.strip()
            if not text:
                continue
            if text == "/quit":
                return 0
            context = BotContext(conversation_id=conversation, client_id=args.client)
            if text == "/help":
                print(HELP, file=stdout)
            elif text == "/new":
                conversation = (
                    f"{args.conversation}-{len(await bot.list_conversations(args.client)) + 1}"
                )
                print(f"(new conversation {conversation})", file=stdout)
            elif text == "/history":
                history = await bot.get_history(context)
                for m in history:
                    print(f"  {m.seq:>4} {m.role}: {m.content}", file=stdout)
                if not history:
                    print(f"  (conversation {conversation} is empty)", file=stdout)
            elif text.startswith("/") and " " not in text:
                print(f"unknown command {text}; {HELP}", file=stdout)
            else:
                print("bot> ", end="", file=stdout, flush=True)
                try:
                    await _answer(
                        bot.stream_chat(text, context),
                        stdout,
                        patience=patience,
                        interactive=interactive,
                    )
                except KubebotsError as exc:
                    print(f"\n[error] {type(exc).__name__}: {exc.message}", file=stdout)


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
        print(file=sys.stdout)
        return 130
    except KubebotsError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
