"""The governance plugin's web layer: routes and pages only; rules live in airgate.governance.promotion."""
