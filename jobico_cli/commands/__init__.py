"""The CLI's commands, one module per area, written at module level: top-level commands with
``@commands(...)`` (``common.Commands``), a group as the module's ``typer.Typer``; each module's
``register(app)`` adds them."""
