"""Development tools: the seeded simulator and the multi-process Airflow stack the tests and benchmarks start."""
