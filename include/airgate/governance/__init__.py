"""Governance: approval requests and the rules on who may decide, evidence, lineage."""
