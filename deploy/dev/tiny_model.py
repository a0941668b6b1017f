"""Build a tiny Qwen2.5-VL (or Qwen3-VL) with random weights, its tokenizer and processor, with no
hub access.

Its answers are meaningless: it exists so that the real vLLM engine can run the whole pipeline on a
machine with no GPU and no network (tests, CI, `make run` with no model configured). Building it
twice with the same seed gives the same bytes. The Qwen3-VL one has that family's shape where it
matters to vidserve: patches of 16 (frame sides multiples of 32), and vLLM's Qwen3-VL processor,
which writes each temporal patch's time (`<1.5 seconds>`) into the prompt from the video's
metadata.

    python -m deploy.dev.tiny_model /path/to/dir [--family qwen3-vl] [--says yes]

`--says WORD` steers the Qwen2.5-VL one to WORD: every layer's output projections are zeroed
(each position's hidden state is its own token's embedding), the final norm keeps one channel,
and the embeddings make that channel largest for WORD's tokens; so the engine's every first
choice among the tokens it may pick is WORD's (a guided yes/no answers WORD whatever the frames;
free text repeats it). It is how the alert tests get the answer they need from a real engine.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

logger = logging.getLogger("ray.serve.vidserve.tiny_model")

FORMAT_VERSION = 2  # 2: Qwen3-VL's video budget per video
MARKER = "vidserve_tiny_model.json"
QWEN2_5_VL, QWEN3_VL = "qwen2.5-vl", "qwen3-vl"
FAMILIES = (QWEN2_5_VL, QWEN3_VL)
# Processor budget: 224x224 frames at most, so 8 frames are 256 visual tokens.
MAX_PIXELS = 224 * 224
MIN_PIXELS = 56 * 56
VIDEO_FRAMES = 64  # Qwen3-VL: the video budget is this many frames at MAX_PIXELS

SPECIAL_TOKENS = [
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
]

# Qwen2-VL's chat template: text, image and video parts; a default system prompt.
CHAT_TEMPLATE = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}"
    "{% for message in messages %}{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}"
    "{{ message['content'] }}<|im_end|>\n{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "{% set image_count.value = image_count.value + 1 %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'video' or 'video' in content %}"
    "{% set video_count.value = video_count.value + 1 %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in content %}{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n"
    "{% endif %}{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

_CORPUS = (
    "The video shows a person walking a dog in a park. A red car drives along the street. "
    "What happens in this clip? Describe the scene, the objects, the colours and the actions. "
    "Answer in JSON with the keys summary, objects, count, colour, true, false, null. "
    '0 1 2 3 4 5 6 7 8 9 10 { } [ ] : , " . ? ! - _ '
)


def ensure_tiny_model(
    path: Path, seed: int = 0, family: str = QWEN2_5_VL, says: str | None = None
) -> Path:
    """Build the tiny model at `path` unless a current one is already there."""
    marker = path / MARKER
    if marker.is_file():
        meta = json.loads(marker.read_text())
        wanted = {"format_version": FORMAT_VERSION, "seed": seed, "says": says}
        # A marker without a family is from before Qwen3-VL: a Qwen2.5-VL.
        if {k: meta.get(k) for k in wanted} == wanted and meta.get("family", QWEN2_5_VL) == family:
            return path
    build_tiny_model(path, seed=seed, family=family, says=says)
    return path


def build_tiny_model(
    path: Path, seed: int = 0, family: str = QWEN2_5_VL, says: str | None = None
) -> Path:
    """Write a tiny random model of `family` to `path` (replaced atomically); `says`: steered
    to that word (the module's docstring)."""
    if family not in FAMILIES:
        raise ValueError(f"family must be one of {', '.join(FAMILIES)}, not {family!r}")
    if says is not None and family != QWEN2_5_VL:
        raise ValueError("only the Qwen2.5-VL tiny model can be steered (--says)")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".tiny-", dir=path.parent))
    try:
        tokenizer = _build_tokenizer(staging)
        if family == QWEN3_VL:
            _build_qwen3_model(staging, tokenizer, seed)
        else:
            steer = tokenizer.encode(says, add_special_tokens=False) if says else None
            _build_model(staging, tokenizer, seed, steer)
        _build_processor(staging, tokenizer, family)
        marker: dict[str, Any] = {"format_version": FORMAT_VERSION, "seed": seed, "family": family}
        if says is not None:
            marker["says"] = says
        (staging / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
        if path.exists():
            shutil.rmtree(path)
        staging.rename(path)
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    logger.info("built the tiny %s test model at %s", family, path)
    return path


def _build_tokenizer(directory: Path):  # type: ignore[no-untyped-def]
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[],
        show_progress=False,
    )
    bpe.train_from_iterator([_CORPUS] * 20, trainer=trainer)
    state = json.loads(bpe.to_str())
    vocab: dict[str, int] = state["model"]["vocab"]
    merges = [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in state["model"]["merges"]
    ]
    tokenizer = Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,  # type: ignore[arg-type]  # transformers 5 wants tuples here
        unk_token=None,  # type: ignore[arg-type]
        bos_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.add_special_tokens({"additional_special_tokens": SPECIAL_TOKENS})
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(directory)
    return tokenizer


# The vision encoder both tiny models share (each adds its family's own keys).
_VISION: dict[str, Any] = {
    "depth": 2,
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_heads": 2,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "out_hidden_size": 128,
}


def _media_token_ids(ids: dict[str, int]) -> dict[str, Any]:
    """The config's ids of the image, video and vision-marker tokens (both families')."""
    return {
        "image_token_id": ids["<|image_pad|>"],
        "video_token_id": ids["<|video_pad|>"],
        "vision_start_token_id": ids["<|vision_start|>"],
        "vision_end_token_id": ids["<|vision_end|>"],
    }


def _text_config(ids: dict[str, int], vocab_size: int, rope: dict[str, Any]) -> dict[str, Any]:
    """The tiny language model both families share: 2 layers of 128, heads of 64."""
    return {
        "vocab_size": vocab_size,
        "hidden_size": 128,
        "intermediate_size": 256,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "num_key_value_heads": 2,
        "head_dim": 64,
        "max_position_embeddings": 4096,
        "rope_parameters": {"rope_type": "default", **rope},
        "bos_token_id": ids["<|endoftext|>"],
        "eos_token_id": ids["<|im_end|>"],
        "pad_token_id": ids["<|endoftext|>"],
        "tie_word_embeddings": True,
    }


def _build_model(directory: Path, tokenizer, seed: int, steer: list[int] | None = None) -> None:  # type: ignore[no-untyped-def]
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLForConditionalGeneration

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    vocab_size = ((len(tokenizer) + 63) // 64) * 64
    config = Qwen2_5_VLConfig(
        text_config=_text_config(
            ids, vocab_size, {"rope_theta": 1000000.0, "mrope_section": [8, 12, 12]}
        ),
        vision_config={
            **_VISION,
            "patch_size": 14,
            "window_size": 112,
            "fullatt_block_indexes": [1],
            "tokens_per_second": 2,
        },
        **_media_token_ids(ids),
        tie_word_embeddings=True,
    )
    config.architectures = ["Qwen2_5_VLForConditionalGeneration"]
    _save_random(directory, Qwen2_5_VLForConditionalGeneration, config, ids, seed, steer=steer)


def _save_random(
    directory: Path,
    model_cls: Any,
    config: Any,
    ids: dict[str, int],
    seed: int,
    *,
    steer: list[int] | None = None,
) -> None:
    import torch
    from transformers import GenerationConfig

    torch.manual_seed(seed)
    model: Any = model_cls(config)
    model = model.to(torch.float32).eval()
    if steer:
        _steer(model, steer)
    model.save_pretrained(directory, safe_serialization=True)
    GenerationConfig(
        bos_token_id=ids["<|endoftext|>"],
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]],
        pad_token_id=ids["<|endoftext|>"],
    ).save_pretrained(directory)


def _steer(model: Any, tokens: list[int]) -> None:
    """Make `tokens` the engine's first choice everywhere (the module's docstring)."""
    import torch

    with torch.no_grad():
        for name, param in model.named_parameters():
            if "visual" in name:
                continue
            if name.endswith(("self_attn.o_proj.weight", "mlp.down_proj.weight")):
                param.zero_()
            elif name.endswith("language_model.norm.weight"):
                param.zero_()
                param[0] = 1.0
            elif name.endswith("embed_tokens.weight"):
                param[:, 0] = 10.0  # every hidden state's kept channel is positive...
                param[tokens, 0] = 20.0  # ...and these tokens' logits the largest (tied head)


def _build_qwen3_model(directory: Path, tokenizer, seed: int) -> None:  # type: ignore[no-untyped-def]
    """Qwen3-VL at the Qwen2.5-VL one's size: interleaved M-RoPE, DeepStack from one vision
    block, patches of 16."""
    from transformers import Qwen3VLConfig, Qwen3VLForConditionalGeneration

    ids = {tok: tokenizer.convert_tokens_to_ids(tok) for tok in SPECIAL_TOKENS}
    config = Qwen3VLConfig(
        text_config=_text_config(
            ids,
            ((len(tokenizer) + 63) // 64) * 64,
            {"rope_theta": 5000000.0, "mrope_section": [12, 10, 10], "mrope_interleaved": True},
        ),
        vision_config={
            **_VISION,
            "patch_size": 16,
            "num_position_embeddings": 2304,
            "deepstack_visual_indexes": [0],
        },
        **_media_token_ids(ids),
        tie_word_embeddings=True,
    )
    config.architectures = ["Qwen3VLForConditionalGeneration"]
    _save_random(directory, Qwen3VLForConditionalGeneration, config, ids, seed)


def _build_processor(directory: Path, tokenizer, family: str) -> None:  # type: ignore[no-untyped-def]
    from transformers import (
        Qwen2_5_VLProcessor,
        Qwen2VLImageProcessor,
        Qwen2VLVideoProcessor,
        Qwen3VLProcessor,
        Qwen3VLVideoProcessor,
    )

    size = {"shortest_edge": MIN_PIXELS, "longest_edge": MAX_PIXELS}
    budget: dict[str, Any] = {"size": size, "min_pixels": MIN_PIXELS, "max_pixels": MAX_PIXELS}
    if family == QWEN3_VL:
        shape = {"patch_size": 16, "merge_size": 2, "temporal_patch_size": 2}
        # Qwen3-VL's video budget is of the whole video (frames x pixels), not of a frame.
        video_size = {"shortest_edge": MIN_PIXELS, "longest_edge": VIDEO_FRAMES * MAX_PIXELS}
        processor: Any = Qwen3VLProcessor(
            image_processor=Qwen2VLImageProcessor(**budget, **shape),
            video_processor=Qwen3VLVideoProcessor(size=video_size, **shape),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
        )
    else:
        processor = Qwen2_5_VLProcessor(
            image_processor=Qwen2VLImageProcessor(**budget),
            video_processor=Qwen2VLVideoProcessor(**budget),
            tokenizer=tokenizer,
            chat_template=CHAT_TEMPLATE,
        )
    processor.save_pretrained(directory)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="directory to write the model to")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--family", choices=FAMILIES, default=QWEN2_5_VL)
    parser.add_argument("--says", default=None, help="steer the model to this word")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build_tiny_model(args.path, seed=args.seed, family=args.family, says=args.says)
    print(args.path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
