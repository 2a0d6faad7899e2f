"""The ``jobico`` console script: the tenant's CLI (``jobico_cli``, HTTP only) with the operator's
commands registered on it (``jobico_ops.launcher``)."""
from __future__ import annotations

from jobico_cli.main import app, main

from . import launcher

launcher.register(app)

__all__ = ["app", "main"]

if __name__ == "__main__":
    main()
