"""``prefect`` with one client request fixed for the pinned stack (``python infra/prefect/prefect_cli.py``).

With prefect 3.8.8 and ``fastapi<0.155`` the client asks ``/work_pools/<pool>/workers/filter`` with
``"offset": null, "limit": null``, which the server refuses (422, "Input should be a valid integer").
``prefect deploy`` makes that request after each deployment ("is a worker online?"), so
``prefect deploy --all`` stops with the 422 after the first one. This wrapper sends ``offset`` 0 and
a limit when the caller gave none, then runs the ordinary ``prefect`` command line; nothing else
changes. ``make services-team`` deploys through it (infra/services/team.py).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any

from prefect.cli import app
from prefect.client.orchestration._work_pools.client import WorkPoolAsyncClient, WorkPoolClient

WORKERS_LIMIT = 100  # under the server's default PREFECT_SERVER_API_DEFAULT_LIMIT (200)


def _with_paging(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def wrapper(self, work_pool_name: str, worker_filter=None, offset=None, limit=None):
        return method(
            self,
            work_pool_name,
            worker_filter,
            0 if offset is None else offset,
            WORKERS_LIMIT if limit is None else limit,
        )

    return wrapper


def patch_worker_filter() -> None:
    """Give ``read_workers_for_work_pool`` (sync and async clients) an integer offset and limit."""
    for cls in (WorkPoolClient, WorkPoolAsyncClient):
        cls.read_workers_for_work_pool = _with_paging(cls.read_workers_for_work_pool)


if __name__ == "__main__":
    patch_worker_filter()
    sys.argv[0] = "prefect"
    sys.exit(app())
