"""``peerbak web``: the address of the daemon's status page, with its login token."""

from __future__ import annotations

from typing import Any

import click

from peerbak.cli.kit import emit, fail, open_home, run
from peerbak.core.errors import ConfigError, DaemonUnavailable

#: Addresses that mean "every interface": the page is opened on this machine's loopback.
ANY: dict[str, str] = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}  # noqa: S104


@click.command()
@click.option("--json", "as_json", is_flag=True)
def web(as_json: bool) -> None:
    """The status page's address with its login token (open it in a browser once; the
    token becomes a cookie). The same token lets Prometheus scrape /metrics as a bearer
    token. Exits 75 when the daemon, which serves the page, is not running."""
    from peerbak.core.addresses import join_host_port

    def go() -> dict[str, Any]:
        home = open_home(unlock=False)
        config = home.config().web
        if not config.enabled:
            raise ConfigError(
                f"the status page is turned off ([web] enabled in {home.config_path})"
            )
        state = home.running_state()
        listen = (state.web_listen if state and state.web_port else "") or config.listen
        port = state.web_port if state and state.web_port else config.port
        host = ANY.get(listen, listen)
        token = home.web_token()
        base = f"http://{join_host_port(host, port)}/"
        return {
            "url": f"{base}?token={token}",
            "base": base,
            "token": token,
            "metrics": f"{base}metrics",
            "listen": listen,
            "port": port,
            "running": bool(state and state.web_port),
            "token_file": str(home.web_token_path),
        }

    info = run(as_json, go)
    emit(as_json, info, info["url"])
    if not info["running"]:
        fail(
            as_json,
            DaemonUnavailable(
                "the daemon is not serving the page now: start it with `peerbak daemon`"
                + ("" if info["port"] else " (the port is chosen when it starts)")
            ),
        )


COMMANDS = (web,)
