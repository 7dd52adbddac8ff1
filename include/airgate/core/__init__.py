"""The bottom layer: the spec, settings (where things live), warehouse tables and engine, migrations, the audit
chain, dataset versions, the MLflow registry, object storage, canonical hashing. Imports no stage."""
