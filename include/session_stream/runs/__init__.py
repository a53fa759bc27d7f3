"""The runs: what each DAG task does, the run report and staging, the CLI and its pipeline.
No Airflow import here either."""
