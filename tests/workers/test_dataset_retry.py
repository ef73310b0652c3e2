"""A coordinator whose data files are not there yet (a ConfigMap created after the job, files still being copied
onto the PVC) loads them once they appear, without a spec change; a prompt template naming a field the records
lack is a data error until spec.prompt is fixed."""

from __future__ import annotations

import json
import time

import pytest
import requests
import yaml
from workers_builders import CREDENTIALS, auth, tiny_spec, write_config

from hexrl_workers.coordinator.server import ThreadedCoordinator
from hexrl_workers.runtime import build_coordinator

pytestmark = pytest.mark.workers


def _ready_within(url: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if requests.get(f"{url}/readyz", timeout=5).status_code == 200:
            return True
        time.sleep(0.1)
    return False


def _data_error(url: str) -> str | None:
    return requests.get(f"{url}/v1/progress", headers=auth("operator"), timeout=5).json().get("dataError")


def _serve(tmp_path, spec) -> ThreadedCoordinator:
    config = write_config(tmp_path, spec, "http://127.0.0.1:1", "http://127.0.0.1:2")
    server = build_coordinator(spec, CREDENTIALS, config_path=str(config), tolerate_data_error=True)
    server.settings.config_poll_seconds = 0.05
    server.settings.data_retry_seconds = 0.2
    return ThreadedCoordinator(server)


def test_files_that_appear_later_are_loaded_without_a_spec_change(tmp_path):
    data = tmp_path / "train.jsonl"
    coord = _serve(tmp_path, tiny_spec(**{"dataset": {"path": str(data)}}))
    try:
        assert "does not exist" in (_data_error(coord.url) or "")
        data.write_text(json.dumps({"prompt": "1+2=", "answer": "3"}) + "\n")
        assert _ready_within(coord.url, 10), _data_error(coord.url)
        assert _data_error(coord.url) is None
    finally:
        coord.close()


def test_a_template_field_the_records_lack_is_a_data_error_until_the_prompt_is_fixed(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "1+2=", "answer": "3"}) + "\n")
    spec = tiny_spec(**{"dataset": {"path": str(data)}, "prompt": {"template": "{topic}: {prompt}"}})
    coord = _serve(tmp_path, spec)
    try:
        assert "prompt.template uses {topic}" in (_data_error(coord.url) or "")
        config = tmp_path / "config.yaml"
        fixed = yaml.safe_load(config.read_text())
        fixed["spec"]["prompt"]["template"] = "{prompt}"
        config.write_text(yaml.safe_dump(fixed))
        assert _ready_within(coord.url, 10), _data_error(coord.url)
    finally:
        coord.close()
