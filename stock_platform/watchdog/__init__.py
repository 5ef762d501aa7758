"""The watchdog: one notification per incident Dagster itself stays silent about (tick errors, markers left
unprocessed, runs that never start), and one when it recovers."""
