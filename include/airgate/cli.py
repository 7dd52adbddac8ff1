"""``python -m airgate.cli``: the command pod specs, the Helm migration job and the Makefile run."""

from airgate.orchestration.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
