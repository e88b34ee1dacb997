"""One module per ``symprop`` subcommand (see ``symprop.cli.COMMANDS``)."""
