"""One module per ``symprop`` subcommand (see ``symbolic.cli.COMMANDS``)."""
