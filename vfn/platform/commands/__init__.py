"""One module per `vfn` subcommand: `add_arguments(parser)` and `run(args)`."""
