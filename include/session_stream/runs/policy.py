"""The run policy's names and defaults, defined once: the DAG, the run report, the demo and the
tests read them from here."""

# The Airflow pool of the load tasks. Two slots: loads of one database take turns on a MySQL lock
# file by file, so a third would only wait, holding a worker slot and a connection; the second
# keeps MySQL busy between the files of two batches (one loads while the other reads the ledger
# and waits for the lock).
LOAD_POOL = "session_stream_load"

# How far back a run looks for files that failed and loads them again (the `sweep_days` param),
# and how long a file may keep failing before the run report lists it as still failing.
DEFAULT_SWEEP_DAYS = 30
