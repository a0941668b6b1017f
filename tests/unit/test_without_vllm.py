"""The laptop profile (Ollama alone) needs no vLLM: with vLLM made unimportable, the app builds.

Run in a fresh interpreter where `import vllm` fails, as on a machine set up with
`make setup PROFILE=ollama` (which installs no vLLM and no torch).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from scripts.setup_env import PROFILE_EXTRAS

CHILD = textwrap.dedent(
    """
    import json, sys
    sys.modules["vllm"] = None  # `import vllm` now raises ImportError
    from deploy.config.serve_config import Profile, app_args, load_config
    from deploy.serve_app import build_app
    config = load_config(profile=Profile.OLLAMA)
    app = build_app(app_args(config))
    deployments = [d["name"] for d in config["applications"][0]["deployments"]]
    try:
        build_app({"backends": {"primary": "vllm", "fallback": "ollama"}})
        refused = None
    except ValueError as exc:
        refused = str(exc)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("vllm", "torch")
                    or m.startswith("ray.serve.llm"))
    print(json.dumps({"deployments": deployments, "refused": refused, "loaded": loaded}))
    """
)


def test_the_ollama_profile_builds_without_vllm() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["deployments"] == [
        "Ingress", "FrameExtractor", "Transcriber", "StreamIngest", "Ollama",
    ]  # fmt: skip
    assert report["loaded"] == ["vllm"]  # only the blocked placeholder
    assert "vLLM is not installed here" in report["refused"]
    assert "VIDSERVE_BACKEND=ollama" in report["refused"]


def test_the_ollama_install_profile_installs_no_vllm_and_no_torch() -> None:
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    requirements = list(pyproject["dependencies"])
    for extra in PROFILE_EXTRAS["ollama"]:
        requirements += pyproject["optional-dependencies"][extra]
    names = {
        r.split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip() for r in requirements
    }
    assert "ollama" in names
    assert not {n for n in names if n.startswith(("vllm", "torch"))}, names
    assert any(r.startswith("vllm") for r in pyproject["optional-dependencies"]["gpu"])
