"""The embedded MQTT broker for the demo and single small sites: amqtt, in process, on loopback.

amqtt 0.12 speaks MQTT 3.1.1 only, so clients connecting here must not rely on MQTT 5 (no shared
subscriptions). Production and the tests use mosquitto; this exists so `shelterwatch demo` needs
nothing installed by hand.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from typing import Any


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedBroker:
    """amqtt running on its own thread and event loop; `url` is what clients connect to."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stopping = False

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout: float = 15.0) -> EmbeddedBroker:
        for name in ("amqtt", "transitions"):
            logging.getLogger(name).setLevel(logging.WARNING)
        self._thread = threading.Thread(target=self._run, name="embedded-broker", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise RuntimeError("embedded MQTT broker did not start")
        if self._error:
            raise RuntimeError(f"embedded MQTT broker failed: {self._error}") from self._error
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker

        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.set_exception_handler(self._on_loop_error)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}", "max_connections": 0}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            self._broker = Broker(config, loop=self._loop)
            self._loop.run_until_complete(self._broker.start())
        except BaseException as e:  # reported to start()
            self._error = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()

    def _on_loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """amqtt 0.12's shutdown can leave a client task failing ("dictionary changed size during
        iteration") after we have stopped: worth a debug line, not a traceback on the console."""
        if self._stopping:
            logging.getLogger(__name__).debug("embedded broker, while stopping: %s", context.get("message"))
        else:
            loop.default_exception_handler(context)

    def stop(self) -> None:
        loop, broker = self._loop, self._broker
        if loop is None or broker is None or not loop.is_running():
            return
        self._stopping = True

        async def shutdown() -> None:
            try:
                await broker.shutdown()
            finally:  # whatever amqtt left running (client handlers) is cancelled and awaited here
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

        fut = asyncio.run_coroutine_threadsafe(shutdown(), loop)
        try:
            fut.result(10)
        except Exception:  # shutting down anyway: log and go on
            logging.getLogger(__name__).warning("embedded broker shutdown was not clean", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        if self._thread:
            self._thread.join(10)
