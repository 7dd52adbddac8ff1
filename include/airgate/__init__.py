"""airgate: the ModelOps lifecycle on Airflow 3, in layers (README, "Architecture").

Imports point down only: ``web``, ``orchestration`` and ``dev`` on top, then ``serving``, ``governance``, ``model``,
``data`` and ``core`` at the bottom. The contracts in ``pyproject.toml`` (import-linter) enforce it. The flat modules
left at this level (``alerts``, ``cli``, ``dkt``, ``notifiers``, ``sensors``) only keep names that live outside
the code working.
"""
