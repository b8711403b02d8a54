"""The ASGI process's interpreter settings, read in a fresh interpreter as uvicorn imports it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROBE = (
    "import gc, json, sys; import bodybroker.asgi as a; "
    "print(json.dumps({'switch': sys.getswitchinterval(), 'young': gc.get_threshold()[0], "
    "'frozen': gc.get_freeze_count(), 'app': type(a.application).__name__}))"
)


def test_the_asgi_process_takes_the_gil_back_from_worker_threads_within_a_millisecond(
    tmp_path: Path,
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(DJANGO_SETTINGS_MODULE="bodybroker.settings.base", BODYBROKER_VAR_DIR=str(tmp_path))
    out = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    )
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen["switch"] <= 0.001  # the interpreter's default is 5 ms
    assert seen["young"] == 20_000
    assert seen["frozen"] > 0  # the imported code is out of the collector's generations
    assert seen["app"] == "OpenAIGateway"
