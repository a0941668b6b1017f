"""The memory estimator against figures worked out by hand from the models' published configs
(config.json of each Hugging Face repository; the numbers are in deploy/config/models.yaml)."""

from __future__ import annotations

import pytest

from deploy.config.catalog import GPU_SIZES_GB, catalog
from deploy.models.memory import (
    GIB,
    RUNTIME_OVERHEAD_BYTES,
    Setup,
    activation_bytes,
    advice,
    estimate,
    kv_bytes_per_token,
    weight_bytes,
)

QWEN_7B = "Qwen/Qwen2.5-VL-7B-Instruct"
QWEN_72B = "Qwen/Qwen2.5-VL-72B-Instruct"


def _entry(hf_id: str):  # type: ignore[no-untyped-def]
    entry = catalog().by_hf_id(hf_id)
    assert entry is not None
    return entry


def test_kv_cache_per_token_from_the_published_configs() -> None:
    # Qwen2.5-VL-7B: 28 layers, 4 KV heads of 128: 2 (K, V) x 28 x 4 x 128 x 2 bytes = 57,344.
    assert kv_bytes_per_token(_entry(QWEN_7B)) == 2 * 28 * 4 * 128 * 2 == 57_344
    # Qwen2.5-VL-72B: 80 layers, 8 KV heads of 128: 327,680 bytes; over 4 GPUs, 2 heads each.
    assert kv_bytes_per_token(_entry(QWEN_72B)) == 2 * 80 * 8 * 128 * 2 == 327_680
    assert kv_bytes_per_token(_entry(QWEN_72B), 4) == 327_680 // 4
    # Qwen2.5-VL-3B has 2 KV heads: over 4 GPUs each still holds one (replicated).
    three_b = _entry("Qwen/Qwen2.5-VL-3B-Instruct")
    assert kv_bytes_per_token(three_b, 4) == 2 * 36 * 1 * 128 * 2
    # Qwen3-8B: 36 layers, 8 KV heads of 128: 147,456 bytes.
    assert kv_bytes_per_token(_entry("Qwen/Qwen3-8B")) == 2 * 36 * 8 * 128 * 2 == 147_456


def test_weight_bytes_per_dtype_and_for_awq() -> None:
    seven = _entry(QWEN_7B)
    assert weight_bytes(seven, "bfloat16") == 16_580_000_000  # 16.58 GB
    assert weight_bytes(seven, "float32") == 33_160_000_000
    assert weight_bytes(seven, "fp8") == 8_290_000_000
    # AWQ 7B: embeddings 152,064 x 3,584 x 2 (untied) = 1,089,994,752 and the 0.67 B vision
    # encoder stay 16-bit; the other 8.29e9 - 0.67e9 - 1,089,994,752 = 6,530,005,248 weights
    # take 4 bits + (2 + 0.5) bytes per 128: 0.51953125 bytes each.
    awq = _entry("Qwen/Qwen2.5-VL-7B-Instruct-AWQ")
    quantized = 8_290_000_000 - 670_000_000 - 1_089_994_752
    expected = quantized * 0.51953125 + (670_000_000 + 1_089_994_752) * 2
    assert weight_bytes(awq) == int(expected)
    assert 6.8e9 < weight_bytes(awq) < 7.0e9  # the published checkpoint is about 6.9 GB
    with pytest.raises(ValueError, match="unknown dtype"):
        weight_bytes(seven, "int3")


def test_the_7b_model_on_one_24_gib_gpu_worked_out() -> None:
    setup = Setup(gpu_memory_bytes=24 * GIB, max_model_len=8192)
    result = estimate(_entry(QWEN_7B), setup)
    budget = int(24 * GIB * 0.90)  # 23,192,823,808
    weights = 16_580_000_000  # 16,580,000,000
    # 8,192 batched tokens x (gate + up: 2 x 18,944) x 2 bytes = 620,756,992, and the largest
    # video: 19,267,584 pixels / 196 = 98,304 patches x 2 x 3,420 x 2 bytes = 1,344,798,720.
    activations = 8192 * 2 * 18944 * 2 + 98304 * 2 * 3420 * 2
    assert activation_bytes(_entry(QWEN_7B), setup) == activations == 1_965_555_712
    left = budget - weights - RUNTIME_OVERHEAD_BYTES - activations  # 3,036,655,360
    assert result.kv_cache_tokens == left // 57_344 == 52_955
    assert result.fits
    assert result.max_concurrency == 52_955 // 8192 == 6
    assert result.longest_context(concurrency=2) == 26_477


def test_the_72b_model_does_not_fit_one_80_gib_gpu_and_the_advice_says_what_does() -> None:
    setup = Setup(gpu_memory_bytes=80 * GIB, max_model_len=8192)
    result = estimate(_entry(QWEN_72B), setup)
    # 146.8 GB of weights against 77.3 GB usable: nothing is left for the KV cache.
    assert result.weights_bytes == 146_820_000_000
    assert result.kv_cache_tokens == 0
    assert not result.fits
    assert result.shortfall_bytes == 8192 * 327_680
    lines = advice(_entry(QWEN_72B), setup, gpus_available=8)
    # tp 2 leaves 73.4 GB of weights per GPU against 77.3 GB: too little; tp 4 fits.
    assert lines[0].startswith("use 4 GPUs: llm.tensor_parallel_size: 4")
    assert lines[1] == "a smaller model: llm.model: Qwen/Qwen2.5-VL-72B-Instruct-AWQ"
    assert advice(_entry(QWEN_72B), setup, gpus_available=1)[0].startswith("a smaller model")


def test_a_context_too_long_for_the_kv_cache_is_told_the_longest_that_fits() -> None:
    setup = Setup(gpu_memory_bytes=24 * GIB, max_model_len=65536)
    result = estimate(_entry(QWEN_7B), setup)
    assert not result.fits
    assert advice(_entry(QWEN_7B), setup)[0] == (
        "lower llm.max_model_len to 52955 or less (the KV cache holds 52955)"
    )


@pytest.mark.parametrize("entry", catalog().models, ids=lambda e: e.hf_id)
def test_every_recommended_setting_fits_its_gpu(entry) -> None:  # type: ignore[no-untyped-def]
    for size in GPU_SIZES_GB:
        settings = entry.recommended[size]
        setup = Setup(
            gpu_memory_bytes=size * GIB,
            tensor_parallel_size=settings.tensor_parallel_size,
            max_model_len=settings.max_model_len,
            gpu_memory_utilization=settings.gpu_memory_utilization,
        )
        assert estimate(entry, setup).fits, (entry.hf_id, size, settings)
        assert settings.max_model_len <= entry.architecture.max_position
        assert entry.architecture.heads % settings.tensor_parallel_size == 0


def _built_on_meta(entry) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    """transformers' own model class built from the catalog's architecture on the meta device
    (no memory, no download): (all parameters, vision encoder parameters)."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
        Qwen3Config,
        Qwen3ForCausalLM,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
        Qwen3VLMoeConfig,
        Qwen3VLMoeForConditionalGeneration,
    )

    arch = entry.architecture
    text = {
        "hidden_size": arch.hidden,
        "intermediate_size": arch.intermediate,
        "num_hidden_layers": arch.layers,
        "num_attention_heads": arch.heads,
        "num_key_value_heads": arch.kv_heads,
        "vocab_size": arch.vocab,
        "tie_word_embeddings": arch.tied_embeddings,
    }
    tied = arch.tied_embeddings
    with torch.device("meta"):
        if entry.hf_id.startswith("Qwen/Qwen2.5-VL"):
            vision = {"depth": 32, "hidden_size": 1280, "num_heads": 16,
                      "intermediate_size": entry.vision_encoder.intermediate,
                      "out_hidden_size": arch.hidden}  # fmt: skip
            config = Qwen2_5_VLConfig(
                text_config=text, vision_config=vision, tie_word_embeddings=tied
            )
            model = Qwen2_5_VLForConditionalGeneration(config)
        elif entry.hf_id.startswith("Qwen/Qwen2-VL"):
            vision = {"depth": 32, "embed_dim": 1280, "mlp_ratio": 4, "num_heads": 16,
                      "hidden_size": arch.hidden}  # fmt: skip
            config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=tied)
            model = Qwen2VLForConditionalGeneration(config)
        elif entry.hf_id.startswith("Qwen/Qwen3-VL"):
            encoder = entry.vision_encoder
            vision = {"depth": encoder.depth, "hidden_size": encoder.hidden, "num_heads": 16,
                      "intermediate_size": encoder.intermediate, "out_hidden_size": arch.hidden,
                      "patch_size": 16, "deepstack_visual_indexes": [5, 11, 17]}  # fmt: skip
            text["head_dim"] = arch.head_dim
            if arch.experts is not None:
                text.update(num_experts=arch.experts.count,
                            num_experts_per_tok=arch.experts.per_token,
                            moe_intermediate_size=arch.experts.intermediate)  # fmt: skip
                moe = Qwen3VLMoeConfig(
                    text_config=text, vision_config=vision, tie_word_embeddings=tied
                )
                model = Qwen3VLMoeForConditionalGeneration(moe)
            else:
                dense = Qwen3VLConfig(
                    text_config=text, vision_config=vision, tie_word_embeddings=tied
                )
                model = Qwen3VLForConditionalGeneration(dense)
        else:
            model = Qwen3ForCausalLM(Qwen3Config(head_dim=arch.head_dim, **text))
    visual = getattr(model.model, "visual", None)
    count = sum(p.numel() for p in model.parameters())
    return count, sum(p.numel() for p in visual.parameters()) if visual is not None else 0


@pytest.mark.parametrize(
    "entry", [e for e in catalog().models if e.quantized_of is None], ids=lambda e: e.hf_id
)
def test_the_catalogs_sizes_are_those_of_its_architectures(entry) -> None:  # type: ignore[no-untyped-def]
    """params_b (from the model cards) equals the parameters of the architecture the catalog
    describes, as transformers builds it: the shape used for the KV cache is the right one."""
    total, vision = _built_on_meta(entry)
    assert total / 1e9 == pytest.approx(entry.params_b, rel=0.002)
    assert vision / 1e9 == pytest.approx(entry.vision_params_b, rel=0.05, abs=1e-9)
