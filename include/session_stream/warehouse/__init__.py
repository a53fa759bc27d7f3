"""The warehouse: MySQL connections, DDL, migrations, privileges, the loader, its ledger and rejects."""
