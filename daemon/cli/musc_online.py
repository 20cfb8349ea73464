"""The ``musc-online`` app: the library's offline commands (eval, replay) and the line tools (publish, status,
demo, review, judges, band, accounts, store). Nothing imports it."""

from __future__ import annotations

import typer

from daemon.cli.accounts_commands import accounts_app
from daemon.cli.camera_commands import camera_command
from daemon.cli.judges_commands import judges_command
from daemon.cli.line_commands import band_app, demo_command, publish_command, status_command
from daemon.cli.plc_commands import plc_command
from daemon.cli.review_commands import review_app
from daemon.cli.store_commands import store_app
from daemon.cli.weights_commands import weights_app
from musc_online.cli.eval_command import eval_command
from musc_online.cli.replay_command import replay_command

app = typer.Typer(
    help="musc-online: zero-shot visual inspection with MuSc (batch evaluation and line tools).",
    no_args_is_help=True,
    add_completion=False,
)
app.command("eval")(eval_command)
app.command("replay")(replay_command)
app.command("publish")(publish_command)
app.command("camera")(camera_command)
app.command("plc")(plc_command)
app.command("status")(status_command)
app.command("demo")(demo_command)
app.add_typer(review_app, name="review")
app.command("judges")(judges_command)
app.add_typer(band_app, name="band")
app.add_typer(accounts_app, name="accounts")
app.add_typer(store_app, name="store")
app.add_typer(weights_app, name="weights")


@app.callback()
def main() -> None:
    """Zero-shot visual inspection with MuSc: batch evaluation, streaming replay, line tools."""


if __name__ == "__main__":
    app()
