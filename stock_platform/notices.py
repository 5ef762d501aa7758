"""Library notices a user of the console commands cannot act on, silenced once for `stock-platform` and `make run`.

Dagster's beta notice for observable source assets (`raw_stock_files`: the API is what Dagster documents for
observing external files) and platformdirs' note about XDG_RUNTIME_DIR in containers. Anything else still prints.
"""

import warnings

NOTICES = (".*is currently in beta.*", "XDG_RUNTIME_DIR is not set.*")


def silence_known_notices() -> None:
    for message in NOTICES:
        warnings.filterwarnings("ignore", message=message)
