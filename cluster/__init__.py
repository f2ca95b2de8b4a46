"""Cluster plumbing: reaching Spark, Java and the catalog, one concern per module.

- ``java``: finding the Java runtime (the only place) and pyspark's jars;
- ``java_errors``: transient/permanent classification of Spark failures by Java class;
- ``metastore``: client side of the embedded Hive metastore (start, reuse, stop);
- ``metastore_server``: the metastore server, run in the detached supervisor process;
- ``catalog``: catalog configuration resolved for Spark and pyiceberg;
- ``jars``: the Iceberg Spark runtime jar;
- ``spark_session``: RayDP sessions and Iceberg commit tagging;
- ``raydp_namespace``: per-session Ray namespaces for RayDP app masters;
- ``cluster_config``: offline validation of a Ray cluster-launcher file.
"""
