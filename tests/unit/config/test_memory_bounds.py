"""The worst-case memory docs/limits.md states is what deploy/config/memory_bounds.py computes from
serve_config.yaml (the real ingress's peak under load: tests/integration/config/
test_ingress_memory.py)."""

from __future__ import annotations

from pathlib import Path

from deploy.config import memory_bounds
from deploy.config.serve_config import Profile, app_args, load_config
from deploy.config.settings import AppArgs

ROOT = Path(__file__).resolve().parents[3]


def test_the_limits_page_states_the_bounds_computed_from_serve_config() -> None:
    config = load_config(profile=Profile.GPU)
    args = AppArgs.model_validate(app_args(config))
    deployments = {d["name"]: d for d in config["applications"][0]["deployments"]}
    extractor = deployments["FrameExtractor"]
    page = (ROOT / "docs" / "limits.md").read_text()
    ingress = memory_bounds.ingress(args).describe()
    decoding = memory_bounds.extractor(
        args, extractor["max_ongoing_requests"], extractor["ray_actor_options"]["num_cpus"]
    ).describe()
    assert f"**{ingress}**" in page
    assert f"**{decoding}**" in page
