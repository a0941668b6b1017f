"""`vidserve download MODEL`: a model into the Hugging Face cache (or a directory), ahead of time.

huggingface_hub does the work: progress bars per file, downloads resumed where they stopped,
HF_ENDPOINT (a mirror), HF_HOME / HF_HUB_CACHE (where), HF_TOKEN (gated models) and
HF_HUB_OFFLINE (only what is cached) honoured. MODEL is an HF id or a catalog Ollama tag
(`qwen2.5vl:7b` -> Qwen/Qwen2.5-VL-7B-Instruct)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from deploy.config.catalog import catalog

# PyTorch pickles and other frameworks' copies of weights that vLLM does not read.
SKIPPED = ["*.pt", "*.pth", "*.bin", "*.msgpack", "*.h5", "*.ckpt", "original/*"]


def skipped(repo_id: str) -> list[str]:
    """What not to fetch: a speech model (faster-whisper, CTranslate2) keeps its weights in
    model.bin, which a VLM's download skips."""
    return [] if "whisper" in repo_id.lower() else SKIPPED


@dataclass(frozen=True)
class Downloaded:
    repo_id: str
    path: Path


class DownloadError(Exception):
    """Why the model could not be downloaded, and what to do (the CLI prints it, exit 1)."""


def resolve_repo_id(model: str) -> str:
    if "/" in model:
        return model
    hf_id = catalog().hf_id_for(model)
    if hf_id is None:
        raise DownloadError(
            f"{model!r} is neither a Hugging Face id (Org/Name) nor an Ollama tag the catalog "
            "knows; `vidserve models` lists them"
        )
    return hf_id


def download(model: str, revision: str | None = None, local_dir: Path | None = None) -> Downloaded:
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    repo_id = resolve_repo_id(model)
    try:
        path = snapshot_download(
            repo_id, revision=revision, local_dir=local_dir, ignore_patterns=skipped(repo_id)
        )
    except GatedRepoError as exc:
        raise DownloadError(
            f"{repo_id} is gated: accept its licence on huggingface.co and set HF_TOKEN"
        ) from exc
    except RepositoryNotFoundError as exc:
        raise DownloadError(
            f"no model repository {repo_id} (or it is private: set HF_TOKEN)"
        ) from exc
    except RevisionNotFoundError as exc:
        raise DownloadError(f"{repo_id} has no revision {revision!r}") from exc
    except LocalEntryNotFoundError as exc:
        raise DownloadError(
            f"{repo_id} is not in the Hugging Face cache and it cannot be fetched: HF_HUB_OFFLINE "
            "is set or the Hub (HF_ENDPOINT) is unreachable. Run this where there is network, "
            "with the same HF_HOME, or copy the model directory here"
        ) from exc
    except OSError as exc:  # network errors from the HTTP client are OSErrors too
        raise DownloadError(f"downloading {repo_id} failed: {exc}; run again to resume") from exc
    return Downloaded(repo_id, Path(str(path)))
