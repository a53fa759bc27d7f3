-- Run once by the mysql image on the first start, after 01-users.sh created the accounts.
-- The tables themselves are made by `session-stream init-db`, run as loader by airflow-init.

CREATE DATABASE IF NOT EXISTS `warehouse` CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci;

-- loader: the DAGs and the CLI. Rights on the warehouse schema only, none global, no GRANT OPTION:
--   SELECT, INSERT, UPDATE, DELETE   the ledger, the newest-wins merge, LOAD DATA LOCAL INFILE
--                                    (LOCAL reads the file on the client: no FILE privilege)
--   CREATE, DROP, ALTER, INDEX       init-db and its migrations; the metadata refresh builds a new
--                                    lookup table and swaps it in with RENAME TABLE, which needs
--                                    ALTER + DROP on the old table and CREATE + INSERT on the new
--   CREATE TEMPORARY TABLES          per-load staging tables
--   CREATE VIEW, SHOW VIEW           the BI views (v_daily_sessions, ...), created by init-db
-- Not granted because the engine does not use them: LOCK TABLES (loads serialise with GET_LOCK),
-- REFERENCES (no foreign keys), TRIGGER, EVENT, routines. Add one here if the schema comes to need it.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE TEMPORARY TABLES,
      CREATE VIEW, SHOW VIEW
   ON `warehouse`.* TO 'loader'@'%';

-- analyst: BI tools (Tableau, Metabase, ...). Read-only. The views run with their definer's
-- (loader's) rights, so SELECT on the schema is all an analyst needs to query them.
GRANT SELECT, SHOW VIEW ON `warehouse`.* TO 'analyst'@'%';
