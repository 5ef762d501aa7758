"""Daily price downloads: a price source, a daily-partitioned download asset and its schedule, landing in S3."""
