"""The model catalog: every models/*.yaml is a valid ModelSpec and agrees with the reference.

The ``REFERENCE`` table below is transcribed by hand, independently of the YAML files, from
``/work/shared/reference/sizing-and-cost-facts.md`` §5 ("Model architectures"). It is a second
copy on purpose: a typo in either the reference transcription or a model file shows up here as a
mismatch instead of silently flowing into the sizing engine.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from servekit.spec import ModelSpec, Quantization

MODELS_DIR = Path(__file__).resolve().parents[1] / "models"

EXPECTED_IDS = {
    "llama-3.1-405b-instruct",
    "llama-3.1-70b-instruct",
    "llama-3.1-8b-instruct",
    "llama-3.3-70b-instruct",
    "mixtral-8x22b-instruct",
    "qwen2.5-72b-instruct",
    "qwen2.5-32b-instruct",
    "qwen2.5-14b-instruct",
    "qwen2.5-7b-instruct",
    "qwen3-8b",
    "qwen3-14b",
    "qwen3-32b",
    "gemma-2-9b-it",
    "gemma-2-27b-it",
    "phi-3-medium-128k-instruct",
    "phi-3.5-mini-instruct",
    "command-r-plus",
}

# Transcribed from sizing-and-cost-facts.md §5 (NOT generated from models/*.yaml).
# Columns: layers, hidden, heads, kv heads, head_dim, intermediate, vocab, max_pos,
#          params in billions as the reference prints them, BF16 KV/token in KiB.
# Phi-3-medium: the 128k variant's max_pos (the reference lists "4096 / 131072").
# Qwen2.5: max_pos without YaRN; params are the model-card figures the reference quotes.
REFERENCE: dict[str, tuple[int, int, int, int, int, int, int, int, float, int]] = {
    "llama-3.1-8b-instruct": (32, 4096, 32, 8, 128, 14336, 128256, 131072, 8.03, 128),
    "llama-3.1-70b-instruct": (80, 8192, 64, 8, 128, 28672, 128256, 131072, 70.55, 320),
    "llama-3.3-70b-instruct": (80, 8192, 64, 8, 128, 28672, 128256, 131072, 70.55, 320),
    "llama-3.1-405b-instruct": (126, 16384, 128, 8, 128, 53248, 128256, 131072, 405.85, 504),
    "mixtral-8x22b-instruct": (56, 6144, 48, 8, 128, 16384, 32768, 65536, 140.6, 224),
    "qwen2.5-72b-instruct": (80, 8192, 64, 8, 128, 29568, 152064, 32768, 72.7, 320),
    "qwen2.5-32b-instruct": (64, 5120, 40, 8, 128, 27648, 152064, 32768, 32.5, 256),
    "qwen2.5-14b-instruct": (48, 5120, 40, 8, 128, 13824, 152064, 32768, 14.7, 192),
    "qwen2.5-7b-instruct": (28, 3584, 28, 4, 128, 18944, 152064, 32768, 7.61, 56),
    "gemma-2-9b-it": (42, 3584, 16, 8, 256, 14336, 256000, 8192, 9.24, 336),
    "gemma-2-27b-it": (46, 4608, 32, 16, 128, 36864, 256000, 8192, 27.2, 368),
    "phi-3.5-mini-instruct": (32, 3072, 32, 32, 96, 8192, 32064, 131072, 3.82, 384),
    "phi-3-medium-128k-instruct": (40, 5120, 40, 10, 128, 17920, 32064, 131072, 13.96, 200),
    "command-r-plus": (64, 12288, 96, 8, 128, 33792, 256000, 8192, 104.0, 256),
    "qwen3-32b": (64, 5120, 64, 8, 128, 25600, 151936, 40960, 32.8, 256),
    "qwen3-14b": (40, 5120, 40, 8, 128, 17408, 151936, 40960, 14.8, 160),
    "qwen3-8b": (36, 4096, 32, 8, 128, 12288, 151936, 40960, 8.2, 144),
}

# Tied input/output embeddings (HF config ``tie_word_embeddings``).
TIED = {"gemma-2-9b-it", "gemma-2-27b-it", "command-r-plus"}

MODEL_FILES = sorted(MODELS_DIR.glob("*.yaml"))


def _load(path: Path) -> ModelSpec:
    return ModelSpec.model_validate(yaml.safe_load(path.read_text()))


@pytest.fixture(scope="module")
def catalog() -> dict[str, ModelSpec]:
    return {p.stem: _load(p) for p in MODEL_FILES}


def test_catalog_directory_is_not_empty() -> None:
    assert MODEL_FILES, f"no model files in {MODELS_DIR}"


@pytest.mark.parametrize("path", MODEL_FILES, ids=lambda p: p.stem)
def test_file_validates_and_id_matches_file_name(path: Path) -> None:
    spec = _load(path)
    assert spec.id == path.stem


def test_ids_unique_and_expected_set_present(catalog: dict[str, ModelSpec]) -> None:
    ids = [spec.id for spec in catalog.values()]
    assert len(ids) == len(set(ids))
    assert set(ids) == EXPECTED_IDS


def test_reference_table_covers_every_expected_model() -> None:
    assert set(REFERENCE) == EXPECTED_IDS


@pytest.mark.parametrize("model_id", sorted(EXPECTED_IDS))
def test_architecture_matches_reference(catalog: dict[str, ModelSpec], model_id: str) -> None:
    layers, hidden, heads, kv, head_dim, inter, vocab, max_pos, _params_b, kv_kib = REFERENCE[model_id]
    a = catalog[model_id].architecture
    got = (
        a.num_layers, a.hidden_size, a.num_attention_heads, a.num_key_value_heads,
        a.head_dim, a.intermediate_size, a.vocab_size, a.max_position_embeddings,
    )
    assert got == (layers, hidden, heads, kv, head_dim, inter, vocab, max_pos)
    # BF16 KV per token at full attention, as the reference computes it: 2·L·kv·hd·2 bytes.
    assert 2 * a.num_layers * a.num_key_value_heads * a.head_dim * 2 == kv_kib * 1024


@pytest.mark.parametrize("model_id", sorted(EXPECTED_IDS))
def test_total_params_match_reference(catalog: dict[str, ModelSpec], model_id: str) -> None:
    params_b = REFERENCE[model_id][8]
    # The reference prints 2-4 significant figures (and "~104B" for Command R+).
    assert catalog[model_id].total_params / 1e9 == pytest.approx(params_b, rel=0.005)


@pytest.mark.parametrize("model_id", sorted(EXPECTED_IDS))
def test_tied_embeddings(catalog: dict[str, ModelSpec], model_id: str) -> None:
    assert catalog[model_id].architecture.tie_word_embeddings is (model_id in TIED)


def test_mixture_of_experts_only_mixtral(catalog: dict[str, ModelSpec]) -> None:
    for model_id, spec in catalog.items():
        a = spec.architecture
        if model_id == "mixtral-8x22b-instruct":
            assert (a.num_experts, a.experts_per_token) == (8, 2)
            assert spec.active_params == pytest.approx(39e9, rel=0.02)
            assert spec.params_per_token == spec.active_params
        else:
            assert a.num_experts is None and a.experts_per_token is None
            assert spec.active_params is None


def test_sliding_window_only_gemma2_on_half_the_layers(catalog: dict[str, ModelSpec]) -> None:
    for model_id, spec in catalog.items():
        a = spec.architecture
        if model_id.startswith("gemma-2-"):
            assert a.sliding_window == 4096
            assert a.sliding_window_layers * 2 == a.num_layers
        else:
            assert a.sliding_window is None and a.sliding_window_layers == 0


def test_pre_quantized_formats_name_a_checkpoint(catalog: dict[str, ModelSpec]) -> None:
    for model_id, spec in catalog.items():
        assert Quantization.BF16 in spec.quantizations, model_id
        assert spec.quantizations[Quantization.BF16].repo is None, model_id
        for q in (Quantization.AWQ, Quantization.GPTQ, Quantization.INT8):
            cp = spec.quantizations.get(q)
            if cp is not None:
                assert cp.repo and "/" in cp.repo, f"{model_id} {q.value} needs an org/name repo"


def test_commercial_use_false_exactly_for_command_r_plus(catalog: dict[str, ModelSpec]) -> None:
    non_commercial = {m for m, spec in catalog.items() if not spec.license.commercial_use}
    assert non_commercial == {"command-r-plus"}
    assert catalog["command-r-plus"].license.id == "CC-BY-NC-4.0"


def test_licences(catalog: dict[str, ModelSpec]) -> None:
    ids = {m: spec.license.id for m, spec in catalog.items()}
    assert ids["qwen2.5-72b-instruct"] == "qwen"  # the 72B is not Apache-2.0
    for m in ("qwen2.5-32b-instruct", "qwen2.5-14b-instruct", "qwen2.5-7b-instruct",
              "qwen3-8b", "qwen3-14b", "qwen3-32b", "mixtral-8x22b-instruct"):
        assert ids[m] == "Apache-2.0", m
    for m in ("phi-3-medium-128k-instruct", "phi-3.5-mini-instruct"):
        assert ids[m] == "MIT", m
    assert {ids[m] for m in catalog if m.startswith("gemma-2-")} == {"gemma"}
    assert {ids[m] for m in catalog if m.startswith("llama-3.1-")} == {"llama3.1"}
    assert ids["llama-3.3-70b-instruct"] == "llama3.3"


def test_llama_and_gemma_are_gated(catalog: dict[str, ModelSpec]) -> None:
    for model_id, spec in catalog.items():
        if model_id.startswith(("llama-", "gemma-")):
            assert spec.gated, model_id
        if model_id.startswith(("qwen", "phi-")):
            assert not spec.gated, model_id


def test_every_file_cites_the_reference(catalog: dict[str, ModelSpec]) -> None:
    for model_id, spec in catalog.items():
        assert any(
            s.note and "sizing-and-cost-facts.md §5" in s.note and s.url.endswith("config.json")
            for s in spec.sources
        ), model_id
