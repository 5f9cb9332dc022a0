"""Progress bars for long work, from tqdm: on a terminal only, so logs and pipes stay clean."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager

from tqdm import tqdm


@contextmanager
def bar(total: int | None, label: str) -> Iterator[tqdm]:  # type: ignore[type-arg]
    """A progress bar on stderr, shown when stderr is a terminal; ``update(n)`` moves it."""
    with tqdm(total=total, desc=label, unit="rec", file=sys.stderr, disable=not sys.stderr.isatty(),
              dynamic_ncols=True, leave=False) as shown:
        yield shown
