"""`ossgate serve` and `ossgate keys create|list|revoke` (typer; registered in ossgate/cli.py).

serve_command: the function behind `ossgate serve`     keys_app: the `ossgate keys` sub-app
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
import uvicorn
from rich.console import Console
from rich.table import Table

from ossgate.errors import InvalidRequest, OssgateError
from ossgate.settings import ModelSettings, Settings

keys_app = typer.Typer(
    help="Create, list and revoke API keys (stored hashed in the server's database).", no_args_is_help=True
)
ConfigOption = Annotated[
    Path | None, typer.Option("--config", "-c", help="ossgate.toml (default: $OSSGATE_CONFIG or ./ossgate.toml)")
]


def _fail(e: OssgateError) -> None:
    typer.echo(f"error: {e.message}", err=True)
    raise typer.Exit(1)


def serve_command(
    config: ConfigOption = None,
    host: Annotated[str | None, typer.Option(help="address to listen on (default 127.0.0.1)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8000)")] = None,
    model: Annotated[Path | None, typer.Option("--model", "-m", help="serve this checkpoint directory")] = None,
    name: Annotated[
        str | None, typer.Option(help="the model name clients use with --model (default: its directory name)")
    ] = None,
    allow_unauthenticated: Annotated[bool, typer.Option(help="allow a non-loopback address without API keys")] = False,
    engine: Annotated[
        str | None,
        typer.Option(help="with --model: run the engine in its own 'process' (default) or in a 'thread' of the server"),
    ] = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning")] = "info",
) -> None:
    """Serve the OpenAI-compatible API (chat completions, responses, completions, embeddings, …)."""
    from ossgate.server.main import create_app  # noqa: PLC0415

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        overrides: dict = {"host": host, "port": port}
        if allow_unauthenticated:
            overrides["allow_unauthenticated"] = True
        if model is not None:
            extra = {"engine": engine} if engine else {}
            overrides["models"] = [ModelSettings(name=name or model.resolve().name, path=model, **extra)]
        elif engine:
            raise InvalidRequest("--engine goes with --model; in ossgate.toml set `engine` under [[models]]")
        settings = Settings.load(config, **overrides)
        _check_exposure_early(settings)
    except OssgateError as e:
        _fail(e)
    app = create_app(settings)
    uv_config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=int(settings.shutdown_grace_s) + 5,
        lifespan="on",
    )
    server = GracefulServer(uv_config, grace_s=settings.shutdown_grace_s)
    server.run()
    if not server.started:
        sys.exit(1)


def _check_exposure_early(settings: Settings) -> None:
    """The lifespan checks too; checking here gives a one-line error instead of a lifespan traceback."""
    from ossgate.server.access import KeyStore  # noqa: PLC0415
    from ossgate.server.db import Database  # noqa: PLC0415
    from ossgate.server.main import check_exposure  # noqa: PLC0415

    db = Database(settings.database_url)
    try:
        check_exposure(settings, KeyStore(db))
    finally:
        db.close()


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT: refuse new generations (503), let running streams finish for `grace_s`, then
    abort what is left so each stream still ends cleanly (finish_reason `abort`, then [DONE])."""

    def __init__(self, config: uvicorn.Config, grace_s: float) -> None:
        super().__init__(config)
        self.grace_s = grace_s
        self._draining = False

    def handle_exit(self, sig, frame) -> None:
        services = getattr(getattr(self.config.app, "state", None), "services", None)
        if services is not None and not self._draining:
            self._draining = True
            services.drain()
            with contextlib.suppress(RuntimeError):  # no loop yet: nothing is running to drain
                asyncio.get_running_loop().call_later(self.grace_s, services.abort_all)
        super().handle_exit(sig, frame)


def _keys(config: Path | None):
    from ossgate.server.access import KeyStore  # noqa: PLC0415
    from ossgate.server.db import Database  # noqa: PLC0415

    settings = Settings.load(config)
    return KeyStore(Database(settings.database_url))


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option("--name", "-n", help="who or what the key is for")],
    rpm: Annotated[int | None, typer.Option(help="requests per minute (default: the server's)")] = None,
    tpm: Annotated[int | None, typer.Option(help="tokens per minute (default: the server's)")] = None,
    tenant: Annotated[str, typer.Option(help="whose RAG collections and traces the key sees")] = "default",
    config: ConfigOption = None,
) -> None:
    """Create a key; it is printed once and only its hash is stored."""
    try:
        key, secret = _keys(config).create(name, rpm, tpm, tenant)
    except OssgateError as e:
        _fail(e)
    typer.echo(secret)
    typer.echo(f"created key {key.id} ({key.name}); store it now, it cannot be shown again", err=True)


@keys_app.command("list")
def keys_list(config: ConfigOption = None) -> None:
    """List keys (never their secrets)."""
    try:
        keys = _keys(config).list()
    except OssgateError as e:
        _fail(e)
    table = Table("id", "name", "tenant", "prefix", "created", "status", "rpm", "tpm")
    for k in keys:
        created = datetime.fromtimestamp(k.created_at).strftime("%Y-%m-%d %H:%M")
        status = "active" if k.revoked_at is None else "revoked"
        table.add_row(
            k.id,
            k.name,
            k.tenant,
            k.prefix + "…",
            created,
            status,
            str(k.requests_per_minute or "-"),
            str(k.tokens_per_minute or "-"),
        )
    Console().print(table)


@keys_app.command("revoke")
def keys_revoke(
    name_or_id: Annotated[str, typer.Argument(help="the key's name or id")], config: ConfigOption = None
) -> None:
    """Revoke a key: requests with it are refused from now on."""
    try:
        key = _keys(config).revoke(name_or_id)
    except OssgateError as e:
        _fail(e)
    typer.echo(f"revoked key {key.id} ({key.name})")


# for `python -m ossgate.server.cli` until the lead registers these in ossgate/cli.py
app = typer.Typer(no_args_is_help=True)
app.command("serve")(serve_command)
app.add_typer(keys_app, name="keys")

if __name__ == "__main__":
    app()
