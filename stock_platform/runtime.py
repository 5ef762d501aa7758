"""Process-wide tuning for the processes that load the platform (run workers, the code server, `make run`)."""

import functools
import gc


@functools.cache  # once per process
def freeze_loaded_objects() -> None:
    """Exempt everything loaded so far (imported modules, the definitions) from the cyclic garbage collector.

    A run's process holds ~310,000 such objects, all alive until it exits, and each full collection walked every
    one of them: six per batch run, ~80 ms each, wherever they fell (one in the no-change run's listing of the
    bucket made that run 0.11 s slower, 0.82 s against 0.71 s). `gc.freeze` is the interpreter's own tool for
    this; garbage is collected first so none of it is kept forever.
    """
    gc.collect()
    gc.freeze()
