"""The public path for notifiers named in specs (``airgate.notifiers.LogNotifier``): specs outlive code moves."""

from airgate.orchestration.notifiers import LogNotifier

__all__ = ["LogNotifier"]
