"""One module per `rqa` sub-command; each has ``add_parser(subparsers)`` and ``run(args)``."""
