-- The export's tables as DuckDB views. Replace EXPORT with the directory given to
-- `aiocop-analyze export -o`. label and host come from the Hive partitions; read as
-- text (DuckDB would take a label like 2024 for a number).
CREATE OR REPLACE VIEW slices AS SELECT * FROM read_parquet('EXPORT/slices/**/*.parquet',
    hive_partitioning = true, hive_types = {'label': VARCHAR, 'host': VARCHAR});
CREATE OR REPLACE VIEW events AS SELECT * FROM read_parquet('EXPORT/events/**/*.parquet',
    hive_partitioning = true, hive_types = {'label': VARCHAR, 'host': VARCHAR});
CREATE OR REPLACE VIEW samples AS SELECT * FROM read_parquet('EXPORT/samples/**/*.parquet',
    hive_partitioning = true, hive_types = {'label': VARCHAR, 'host': VARCHAR});
CREATE OR REPLACE VIEW traces AS SELECT * FROM read_parquet('EXPORT/traces/**/*.parquet',
    hive_partitioning = true, hive_types = {'label': VARCHAR, 'host': VARCHAR});
CREATE OR REPLACE VIEW tasks AS SELECT * FROM read_parquet('EXPORT/tasks/**/*.parquet',
    hive_partitioning = true, hive_types = {'label': VARCHAR, 'host': VARCHAR});
