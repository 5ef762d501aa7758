"""Run-tag names, declared once: sensors write them, the run queue (dagster.yaml) and notifications read them."""

# Every run that writes the table carries this tag; dagster.yaml's run queue allows one such run at a time.
TARGET_TAG = "stock_platform/target"
MARKER_TAG = "stock_platform/marker"  # the s3:// URI of the marker upload that started the run
MARKER_ETAG_TAG = "stock_platform/marker_etag"
NOTIFICATION_TAG = "stock_platform/notification"  # "sent" or "pending"
MESSAGE_ID_TAG = "stock_platform/notification_message_id"

# Dagster's own tags that make one run cover a partition range (a single-run backfill of that range).
PARTITION_RANGE_START_TAG = "dagster/asset_partition_range_start"
PARTITION_RANGE_END_TAG = "dagster/asset_partition_range_end"
BACKFILL_TAG = "dagster/backfill"
SENSOR_NAME_TAG = "dagster/sensor_name"
SCHEDULE_NAME_TAG = "dagster/schedule_name"
# Dagster's tag for the data version an asset event records (what the UI's staleness view compares).
DATA_VERSION_TAG = "dagster/data_version"


class NotificationState:
    """Values of NOTIFICATION_TAG."""

    SENT = "sent"
    PENDING = "pending"
