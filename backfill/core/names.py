"""Names shared by several layers, each defined once.

They are facts of the stack or of the tool's on-disk and on-cluster layout; a change
here is a compatibility change (old checkpoints, old clusters), so they live apart.
"""

from __future__ import annotations

#: Spark SQL extensions class that gives Iceberg's MERGE INTO, procedures and metadata tables.
ICEBERG_EXTENSIONS = "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"

#: Folder under the warehouse that holds the checkpoint store's files.
CHECKPOINT_DIRNAME = ".backfill-checkpoints"

#: Ray namespace of the detached checkpoint actor and of a run's partition actors, fixed so
#: that a later driver (another job) finds them.
RAY_NAMESPACE = "iceberg_backfill"

#: Base name of the detached checkpoint actor (a hash of its directory is appended).
CHECKPOINT_ACTOR_NAME = "backfill-checkpoints"

#: The branch readers of the target read.
MAIN_BRANCH = "main"

#: Prefix of a run's write-audit-publish branch of the target (a hash of its ids follows).
RUN_BRANCH_PREFIX = "backfill_"

#: Prefix of the branch a rollback writes to before it publishes.
ROLLBACK_BRANCH_PREFIX = "rollback_"
