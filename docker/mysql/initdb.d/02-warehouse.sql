-- Run once by the mysql image on the first start, after 01-users.sh created the accounts.
-- The tables themselves are made by `session-stream init-db`, run as owner by airflow-init.

-- utf8mb4 with the server's default collation (MySQL 8.4: utf8mb4_0900_ai_ci); naming it would
-- stop every MySQL-compatible server that lacks it.
CREATE DATABASE IF NOT EXISTS `warehouse` CHARACTER SET utf8mb4;

-- owner: owns the warehouse schema. airflow-init runs `session-stream init-db` as owner (the
-- only account with DDL rights), then `session-stream grants --apply` for loader and analyst:
-- their table-level rights name tables init-db creates, hence GRANT OPTION, on this schema only.
-- No Airflow connection holds its password.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE, DROP, ALTER, INDEX, CREATE TEMPORARY TABLES,
      CREATE VIEW, SHOW VIEW
   ON `warehouse`.* TO 'owner'@'%' WITH GRANT OPTION;

-- loader: the DAGs and the CLI. Data rights on the warehouse schema only, none global:
--   SELECT, INSERT, UPDATE, DELETE   the ledger, the newest-wins merge, LOAD DATA LOCAL INFILE
--                                    (LOCAL reads the file on the client: no FILE privilege)
--   CREATE TEMPORARY TABLES          per-load staging tables
-- The named locks (GET_LOCK) need no privilege. airflow-init adds, per metadata lookup table,
-- CREATE, DROP and ALTER on it and on the two names its refresh swaps through (RENAME TABLE).
-- Schema changes are the owner's: the DAGs migrate only when a migration is pending.
GRANT SELECT, INSERT, UPDATE, DELETE, CREATE TEMPORARY TABLES
   ON `warehouse`.* TO 'loader'@'%';

-- analyst: BI tools (Tableau, Metabase, ...). Nothing here: airflow-init grants it SELECT on
-- each session table, BI view and lookup table once init-db has made them (MySQL grants SELECT
-- only on tables that exist), never on session_stream_rejects (raw lines) or the ledger.
