"""CLI subcommands: each module defines ``register(subparsers)`` and a ``run(args) -> int``.

``register`` adds the subcommand's parser and sets ``func=run`` on it. Modules keep their heavy
imports inside ``run`` so that ``tickcast --help`` stays fast.
"""
