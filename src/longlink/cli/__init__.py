"""The ``longlink`` command.

=================  ==========================================================
command            does
=================  ==========================================================
``serve``          run longlink (:mod:`longlink.cli.serve`)
``listen``         connect like an end-user client, print what arrives
``push``           push a message (:mod:`longlink.cli.clients`)
``online``         who is online, in total or in a room
``trace``          what became of a message, as a timeline
``kick``           close a user's connections
``nodes``          the gateway nodes, their load and health
``drain``          stop sending clients to a node (:mod:`longlink.cli.admin`)
``ticket``         sign a business ticket, for testing
``hash-key``       the ``key_sha256`` of an API key for the TOML file
``check-config``   validate a TOML file, print the effective settings
                   (:mod:`longlink.cli.local`)
=================  ==========================================================

This package is the only place that reads the environment, files and
signals. Failures are one line on stderr and an exit code
(:mod:`longlink.cli.failures`; docs/cli.md).
"""

from __future__ import annotations

import click

from longlink import __version__
from longlink.cli.admin import drain, kick, nodes, online, trace
from longlink.cli.clients import listen, push
from longlink.cli.local import check_config, hash_key, ticket
from longlink.cli.serve import serve

__all__ = ["main"]


@click.group()
@click.version_option(__version__, prog_name="longlink")
def main() -> None:
    """longlink: self-hosted long-connection real-time push.

    Exit codes: docs/cli.md (0 ok, 3 server unreachable, 4 credentials refused,
    …).
    """


for command in (
    serve,
    listen,
    push,
    online,
    trace,
    kick,
    nodes,
    drain,
    ticket,
    hash_key,
    check_config,
):
    main.add_command(command)
