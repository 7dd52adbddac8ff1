# airgate on Astro Runtime (Airflow 3.3). The runtime image's ONBUILD steps copy the project into
# /usr/local/airflow and install requirements.txt; we add the airgate library and point Airflow at it.
FROM astrocrpublic.azurecr.io/runtime:3.3-2

# Where the warehouse and MLflow live and the audit key (AIRGATE_WAREHOUSE_URL, AIRGATE_MLFLOW_URI,
# AIRGATE_MLFLOW_ARTIFACTS, AIRGATE_AUDIT_KEY) are given at run time, in the environment (a Kubernetes Secret) or
# airflow.cfg's [airgate], never baked into the image, and never as connections in Airflow's metadata DB (ignored).
ENV AIRGATE_HOME=/usr/local/airflow/.airgate \
    AIRGATE_SPECS_DIR=/usr/local/airflow/include/specs \
    PYTHONPATH=/usr/local/airflow/include \
    GIT_PYTHON_REFRESH=quiet

# The runtime's ONBUILD install does not know constraints.txt, so install the pinned set again with it: the
# image runs exactly what `make venv` and the tests resolved, every transitive version included (kombu, redis,
# ...), not whatever is newest on the build day. The airgate package comes with --no-deps: requirements.txt is
# its dependency set.
# The PyTorch CPU wheel keeps the image free of CUDA libraries; GPU work runs in pods (cncf-kubernetes).
RUN pip install --no-cache-dir -r /usr/local/airflow/requirements.txt -c /usr/local/airflow/constraints.txt \
 && pip install --no-cache-dir --no-deps -e /usr/local/airflow
