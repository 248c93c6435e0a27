"""Prefect flows, one per pipeline stage. Thin: parse params, call ``components``.

Importing this package sets offline, local defaults before Prefect/MLflow/GX are imported:
Prefect keeps its database in ``./.prefect`` (so flow runs are recorded and visible to
``prefect server start`` run from the same folder), nothing phones home, and model hubs stay
offline. Every default can be overridden by setting the variable before running.
"""

import os
from pathlib import Path

_DEFAULTS = {
    "PREFECT_HOME": str(Path.cwd() / ".prefect"),
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "600",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_UI_ENABLED": "true",
    "GX_ANALYTICS_ENABLED": "false",
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "MLFLOW_ENABLE_SYSTEM_METRICS_LOGGING": "true",
}
for _key, _value in _DEFAULTS.items():
    os.environ.setdefault(_key, _value)
