"""`vidserve models`, `config`, `doctor` and `download` run as a user runs them (subprocesses),
against fixtures: the tiny test model as a local directory, a Hugging Face cache laid out as the
hub library writes it (refs, snapshots of symlinks into blobs), a model missing with
HF_HUB_OFFLINE=1, a stand-in `nvidia-smi` answering the query vidserve makes, the Ollama
stand-in, and unreachable Ray and Ollama. Every doctor problem is triggered and its message and
exit code asserted."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploy.dev.tiny_model import ensure_tiny_model
from tests.support.ollama_stub import VISION, OllamaStub
from tests.support.ports import free_port

VIDSERVE = str(Path(sys.executable).parent / "vidserve")
QWEN_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
SNAPSHOT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def tiny_model() -> Path:
    cache = Path(os.environ.get("VIDSERVE_TEST_CACHE", Path.home() / ".cache" / "vidserve"))
    return ensure_tiny_model(cache / "tiny-qwen2.5-vl-test")


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """An empty Hugging Face home."""
    path = tmp_path / "hf-home"
    path.mkdir()
    return path


def _fake_cache(home: Path, repo_id: str, model: Path) -> Path:
    """The hub library's cache layout: blobs, snapshots/<commit> of relative symlinks, refs/main."""
    repo = home / "hub" / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / SNAPSHOT
    (repo / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SNAPSHOT)
    for i, source in enumerate(sorted(model.iterdir())):
        blob = repo / "blobs" / f"{i:040x}"
        shutil.copyfile(source, blob)
        (snapshot / source.name).symlink_to(Path("../../blobs") / blob.name)
    return snapshot


@pytest.fixture
def fake_nvidia_smi(tmp_path: Path) -> Path:
    """`nvidia-smi --query-gpu=index,name,memory.total --format=csv,noheader,nounits` as the
    real one answers it, for one 24 GB NVIDIA L4 (23034 MiB). The real one, on an H100 lent to
    this project, answered `0, NVIDIA H100 80GB HBM3, 81559`, which deploy/models/gpus.py parsed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "nvidia-smi"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in *--query-gpu=index,name,memory.total*) echo "0, NVIDIA L4, 23034";;\n'
        "*) echo 'unexpected arguments' >&2; exit 2;; esac\n"
    )
    script.chmod(0o755)
    return bin_dir


def vidserve(*args: str, path: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VLLM_MODEL_PATH", "VIDSERVE_", "OLLAMA_", "HF_", "RAY_ADDRESS"))
    }
    environment["PATH"] = f"{path}:/usr/bin:/bin" if path else "/usr/bin:/bin"
    environment.update(env)
    return subprocess.run(
        [VIDSERVE, *args], capture_output=True, text=True, env=environment, timeout=300, check=False
    )


def _problems(run: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("problem")]


# --- models ------------------------------------------------------------------------------


def test_models_lists_the_catalog_and_what_fits_the_gpu_found(fake_nvidia_smi: Path) -> None:
    run = vidserve("models", path=fake_nvidia_smi)
    assert run.returncode == 0, run.stderr
    rows = {line.split(" | ")[0].strip(): line for line in run.stdout.splitlines() if " | " in line}
    assert "here (1 x NVIDIA L4)" in rows["model"]
    # An L4 has 23,034 MiB (22.5 GiB), less than test_memory's 24 GiB: 3 sequences, not 6.
    assert rows[QWEN_7B].rstrip().endswith("yes: tp1, 3 x 8192")
    assert rows["Qwen/Qwen2.5-VL-72B-Instruct"].rstrip().endswith("no")
    assert "Qwen/Qwen3-8B" in rows
    assert "text" in rows["Qwen/Qwen3-8B"]


def test_models_without_a_gpu_says_how_to_check_a_size() -> None:
    run = vidserve("models")
    assert run.returncode == 0, run.stderr
    assert "No NVIDIA GPU found" in run.stdout
    sized = vidserve("models", "--gpu-memory-gb", "80", "--gpus", "4")
    row = next(line for line in sized.stdout.splitlines() if "72B-Instruct " in line)
    assert "yes: tp4" in row


# --- config ------------------------------------------------------------------------------


def test_config_says_where_each_value_came_from(tiny_model: Path) -> None:
    run = vidserve(
        "config", "--profile", "cpu", "--set", "llm.max_model_len=2048",
        VLLM_MODEL_PATH=str(tiny_model),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    origin = {line.split()[0]: line.split()[-2:] for line in run.stdout.splitlines()[1:]}
    assert origin["llm.max_model_len"] == ["argument", "--set"]
    assert origin["llm.model"] == ["env", "VLLM_MODEL_PATH"]
    assert origin["llm.dtype"] == ["file", "serve_config.cpu.yaml"]
    assert origin["llm.tensor_parallel_size"] == ["file", "serve_config.yaml"]
    assert origin["ollama.jpeg_quality"][-1] == "default"
    as_yaml = vidserve("config", "--profile", "cpu", "--yaml")
    assert as_yaml.stdout.startswith("proxy_location:")
    bad = vidserve("config", "--set", "llm.max_model_len")
    assert bad.returncode == 2
    assert "write KEY=VALUE" in bad.stderr


# --- doctor ------------------------------------------------------------------------------


def test_doctor_finds_nothing_wrong_in_a_good_setup(tiny_model: Path) -> None:
    run = vidserve(
        "doctor", "--profile", "cpu", VLLM_MODEL_PATH=str(tiny_model), VIDSERVE_FALLBACK="none"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "no problem found" in run.stdout
    assert "(local directory), all files present" in run.stdout


def test_doctor_rejects_an_invalid_config_naming_the_key() -> None:
    run = vidserve("doctor", "--profile", "cpu", "--set", "llm.max_model_len=long")
    assert run.returncode == 1
    (problem,) = _problems(run)
    assert "serve config" in problem
    assert "llm.max_model_len" in run.stdout


def test_doctor_on_a_broken_local_model_and_unreachable_services(
    tiny_model: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "broken-model"
    shutil.copytree(tiny_model, broken)
    (broken / "tokenizer.json").unlink()
    config = json.loads((broken / "config.json").read_text())
    config["model_type"] = "vidserve_custom"  # unknown to transformers: its code comes along
    config["auto_map"] = {"AutoConfig": "configuration_custom.CustomConfig"}
    config["quantization_config"] = {"quant_method": "awq", "bits": 4}
    (broken / "config.json").write_text(json.dumps(config))
    closed = free_port()
    run = vidserve(
        "doctor", "--profile", "cpu", "--ray-address", f"http://127.0.0.1:{closed}",
        "--set", "llm.trust_remote_code=false", "--set", "llm.engine_kwargs.quantization=gptq",
        VLLM_MODEL_PATH=str(broken), OLLAMA_HOST=f"http://127.0.0.1:{closed}",
    )  # fmt: skip
    assert run.returncode == 1
    out = run.stdout
    assert "lacks: tokenizer (tokenizer.json, or vocab.json and merges.txt)" in out
    assert "fix: download it again" in out
    assert "ships its own modelling code" in out
    assert "fix: set llm.trust_remote_code: true" in out
    assert "llm.engine_kwargs.quantization is 'gptq' but the weights" in out
    assert f"no Ray answers at http://127.0.0.1:{closed}" in out
    assert f"Ollama is not reachable at http://127.0.0.1:{closed}" in out
    assert "VIDSERVE_FALLBACK=none" in out
    assert len(_problems(run)) == 5


def test_doctor_offline_without_the_model_and_a_text_only_model(home: Path) -> None:
    stub = OllamaStub({"llava:7b": VISION})  # reachable, but without the model asked for
    stub.start()
    try:
        run = vidserve(
            "doctor", "--profile", "cpu",
            VLLM_MODEL_PATH="Qwen/Qwen3-8B", HF_HOME=str(home), HF_HUB_OFFLINE="1",
            OLLAMA_HOST=stub.url, OLLAMA_MODEL="qwen2.5vl:7b",
        )  # fmt: skip
    finally:
        stub.stop()
    assert run.returncode == 1
    out = run.stdout
    assert "Qwen/Qwen3-8B (Hugging Face id) is not in the Hugging Face cache" in out
    assert "HF_HUB_OFFLINE=1 forbids downloading it" in out
    assert "fix: `vidserve download Qwen/Qwen3-8B`" in out
    assert "is a text-only model" in out
    assert "does not have qwen2.5vl:7b (it has: llava:7b)" in out
    assert "fix: `ollama pull qwen2.5vl:7b`" in out
    assert len(_problems(run)) == 3


def test_doctor_finds_a_model_in_a_cache_snapshot_and_no_gpu_for_the_gpu_profile(
    tiny_model: Path, home: Path
) -> None:
    snapshot = _fake_cache(home, QWEN_7B, tiny_model)
    by_id = vidserve(
        "doctor", "--profile", "gpu",
        VLLM_MODEL_PATH=QWEN_7B, HF_HOME=str(home), HF_HUB_OFFLINE="1", VIDSERVE_FALLBACK="none",
    )  # fmt: skip
    assert f"{QWEN_7B} (Hugging Face id), all files present at {snapshot}" in by_id.stdout
    assert "llm.accelerator is gpu but no NVIDIA GPU answers nvidia-smi" in by_id.stdout
    assert "make run PROFILE=cpu" in by_id.stdout
    # The GPU profile's speech model, not cached and offline: the Transcriber would answer 503.
    assert "Systran/faster-whisper-small is not in the Hugging Face cache and HF_HUB_OFFLINE" in (
        by_id.stdout
    )
    assert by_id.returncode == 1
    assert len(_problems(by_id)) == 2
    by_path = vidserve(
        "doctor", "--profile", "cpu", VLLM_MODEL_PATH=str(snapshot), VIDSERVE_FALLBACK="none"
    )
    assert "(Hugging Face cache snapshot), all files present" in by_path.stdout
    assert by_path.returncode == 0, by_path.stdout


def test_doctor_on_a_gpu_too_small_and_too_few_gpus(fake_nvidia_smi: Path, home: Path) -> None:
    common = {"HF_HOME": str(home), "VIDSERVE_FALLBACK": "none"}
    big = vidserve(
        "doctor", "--profile", "gpu", path=fake_nvidia_smi,
        VLLM_MODEL_PATH="Qwen/Qwen2.5-VL-72B-Instruct", **common,
    )  # fmt: skip
    assert big.returncode == 1
    assert "does not fit 1 x NVIDIA L4 (22 GiB)" in big.stdout
    assert "fix: a smaller model: llm.model: Qwen/Qwen2.5-VL-" in big.stdout
    assert "is not downloaded yet" in big.stdout  # a note, not a problem
    wide = vidserve(
        "doctor", "--profile", "gpu", "--set", "llm.tensor_parallel_size=4", path=fake_nvidia_smi,
        VLLM_MODEL_PATH=QWEN_7B, **common,
    )  # fmt: skip
    assert wide.returncode == 1
    assert "llm.tensor_parallel_size is 4 but 1 x NVIDIA L4 (22 GiB) found" in wide.stdout
    # serve_config.yaml's 0.80 of an L4 leaves 18.0 GiB: the 7B model needs 18.8 before its KV
    # cache; 0.90 of it fits.
    tight = vidserve(
        "doctor", "--profile", "gpu", path=fake_nvidia_smi, VLLM_MODEL_PATH=QWEN_7B, **common
    )
    assert tight.returncode == 1
    assert "fix: raise llm.gpu_memory_utilization to 0.9" in tight.stdout
    fits = vidserve(
        "doctor", "--profile", "gpu", "--set", "llm.gpu_memory_utilization=0.9",
        path=fake_nvidia_smi, VLLM_MODEL_PATH=QWEN_7B, **common,
    )  # fmt: skip
    assert fits.returncode == 0, fits.stdout
    assert "fits with about" in fits.stdout


# --- download ----------------------------------------------------------------------------


def test_download_offline_finds_the_cached_model_and_says_how_to_use_it(
    tiny_model: Path, home: Path
) -> None:
    snapshot = _fake_cache(home, QWEN_7B, tiny_model)
    run = vidserve("download", "qwen2.5vl:7b", HF_HOME=str(home), HF_HUB_OFFLINE="1")
    assert run.returncode == 0, run.stderr
    assert f"{QWEN_7B} is at {snapshot}" in run.stdout
    assert f"VLLM_MODEL_PATH={snapshot}" in run.stdout


def test_download_of_a_missing_model_offline_or_an_unknown_name_fails_with_the_reason(
    home: Path,
) -> None:
    missing = vidserve("download", "Qwen/Qwen3-4B", HF_HOME=str(home), HF_HUB_OFFLINE="1")
    assert missing.returncode == 1
    assert "Qwen/Qwen3-4B is not in the Hugging Face cache" in missing.stderr
    assert "HF_HUB_OFFLINE" in missing.stderr
    unknown = vidserve("download", "llava:13b", HF_HOME=str(home))
    assert unknown.returncode == 1
    assert "neither a Hugging Face id" in unknown.stderr


def test_every_command_has_help() -> None:
    for command in ("run", "config", "models", "doctor", "download", "analyze", "kuberay"):
        run = vidserve(command, "--help")
        assert run.returncode == 0, (command, run.stderr)
        assert "usage: vidserve" in run.stdout
