"""`python -m bot [run|chat]`: start the Slack bot, or talk to the engine in a terminal."""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
from collections.abc import Coroutine
from typing import Any

from bot.config import ConfigError, load_settings
from bot.log import configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("run", help="run the Slack bot (default)")
    chat = sub.add_parser("chat", help="talk to the engine in a terminal (needs only a key)")
    chat.add_argument(
        "--once", metavar="QUESTION", help="answer one question and exit ('-' reads stdin)"
    )
    args = parser.parse_args(argv)
    if args.command == "chat":
        from bot.terminal.chat import main as chat_main

        return chat_main(once=args.once)
    try:
        settings = load_settings()
        configure_logging(settings)
        from bot.app import build_app
        from bot.slack.server import serve

        bot = build_app(settings)
    except ConfigError as exc:
        print(f"deepseek-slack: configuration error: {exc}", file=sys.stderr)
        return 2
    del args
    # What is alive now (modules, the app) lives as long as the process: keep it out of the
    # cyclic GC's full collections, which otherwise walk every start-up object each time and
    # stall the event loop, so every answer in flight waits.
    gc.freeze()
    run(serve(bot))
    return 0


def run(main: Coroutine[Any, Any, None]) -> None:
    """Run the service on uvloop where it exists (Linux, macOS): the event loop's own work is
    a third of the process's CPU at 200 streaming answers, and uvloop does it in C."""
    try:
        import uvloop
    except ImportError:  # Windows
        asyncio.run(main)
        return
    uvloop.run(main)


if __name__ == "__main__":
    sys.exit(main())
