"""Pooling variants and text inputs (PromptBERT templates, INSTRUCTOR instructions, E5/BGE
prefixes) against hand-computed hidden states of the HF model, and each export variant that
sentence-transformers supports reloaded through SentenceTransformer with the same vectors.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from retrieval.encoding import encode_passages, encode_queries
from retrieval.models import DualEncoder
from retrieval.models.dual_encoder import PROMPTBERT_TEMPLATE
from retrieval.models.st_format import read_st_settings

TEXTS = [
    "a claim about vitamin D",
    "Short.",
    "a much longer passage about proteins " * 6,
    'He said "hello" to her.',
]
INSTRUCTIONS = ("Represent the question for retrieving documents: ", "Represent the document: ")


def _hidden(folder, text: str, layers: bool = False):
    """The HF model run by hand on one text: ``(input_ids [T], states [T, d] or all layers)``."""
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    model = AutoModel.from_pretrained(str(folder)).eval()
    encoded = tokenizer(text, return_tensors="pt")
    with torch.no_grad():
        out = model(**encoded, output_hidden_states=layers)
    states = out.hidden_states if layers else out.last_hidden_state[0]
    return encoded["input_ids"][0], states


def _ours(model: DualEncoder, texts: list[str], side: str = "query") -> np.ndarray:
    if side == "query":
        return encode_queries(model, texts, batch_size=3, show_progress=False)
    return encode_passages(model, [None] * len(texts), texts, 3, show_progress=False)


def test_prompt_pooling_is_the_hidden_state_of_mask(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling="prompt", normalize=False)
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    ours = _ours(model, TEXTS)  # sorted, padded batches of 3
    for row, text in enumerate(TEXTS):
        filled = PROMPTBERT_TEMPLATE.replace("[X]", text)
        ids, states = _hidden(tiny_bert_dir, filled)
        (position,) = (ids == tokenizer.mask_token_id).nonzero()[0]
        np.testing.assert_allclose(ours[row], states[position].numpy(), atol=1e-5)
    # and through the training path (tokenize + encode_query) too
    model.eval()
    with torch.no_grad():
        direct = model.encode_query(model.tokenize_queries(TEXTS)).numpy()
    np.testing.assert_allclose(direct, ours, atol=1e-5)


def test_prompt_pooling_truncates_the_text_never_the_template(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling="prompt", query_max_len=24)
    tokenizer = model.tokenizer
    (ids,) = model.token_ids(["word " * 100], "query")
    assert len(ids) == 24
    suffix = tokenizer('" means [MASK] .', add_special_tokens=False)["input_ids"]
    assert ids[-len(suffix) - 1 : -1] == suffix and ids[-1] == tokenizer.sep_token_id
    custom = DualEncoder.from_pretrained(
        tiny_bert_dir, pooling="prompt", prompt_template="[X] , in one word : [MASK]"
    )
    (ids,) = custom.token_ids(["cats"], "query")
    assert tokenizer.decode(ids) == "[CLS] cats, in one word : [MASK] [SEP]"


def test_instructions_are_read_but_left_out_of_mean_pooling(tiny_bert_dir):
    model = DualEncoder.from_pretrained(
        tiny_bert_dir,
        normalize=False,
        query_prefix=INSTRUCTIONS[0],
        passage_prefix=INSTRUCTIONS[1],
        pool_prefix=False,
    )
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_bert_dir))
    ours = {side: _ours(model, TEXTS, side) for side in ("query", "passage")}
    for side, instruction in zip(("query", "passage"), INSTRUCTIONS):
        # [CLS] + the instruction's tokens, counted by hand
        skip = 1 + len(tokenizer(instruction, add_special_tokens=False)["input_ids"])
        for row, text in enumerate(TEXTS):
            _, states = _hidden(tiny_bert_dir, instruction + text)
            expected = states[skip:].mean(dim=0)  # the text's tokens and [SEP]
            np.testing.assert_allclose(ours[side][row], expected.numpy(), atol=1e-5)
    pooled_all = DualEncoder.from_pretrained(
        tiny_bert_dir, normalize=False, query_prefix=INSTRUCTIONS[0]
    )
    assert not np.allclose(_ours(pooled_all, TEXTS), ours["query"], atol=1e-3)


def test_first_last_avg_is_the_mean_of_the_first_and_last_layer(tiny_bert_dir):
    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling="first_last_avg", normalize=False)
    ours = _ours(model, TEXTS)
    for row, text in enumerate(TEXTS):
        _, layers = _hidden(tiny_bert_dir, text, layers=True)
        expected = ((layers[1][0] + layers[-1][0]) / 2).mean(dim=0)
        np.testing.assert_allclose(ours[row], expected.numpy(), atol=1e-5)


# (pooling, prefixes, pool_prefix): every variant sentence-transformers can reproduce
ST_VARIANTS = [
    ("mean", ("", ""), True),
    ("cls", ("query: ", "passage: "), True),  # E5
    ("mean", ("query: ", "passage: "), True),
    ("weighted_mean", ("", ""), True),  # SGPT
    ("mean", INSTRUCTIONS, False),  # INSTRUCTOR
    ("weighted_mean", INSTRUCTIONS, False),
    ("first_last_avg", ("", ""), True),
    ("first_last_avg", INSTRUCTIONS, False),
]


@pytest.mark.parametrize("pooling,prefixes,pool_prefix", ST_VARIANTS)
def test_export_reloads_in_sentence_transformers(
    tiny_bert_dir, tmp_path, pooling, prefixes, pool_prefix
):
    from sentence_transformers import SentenceTransformer

    model = DualEncoder.from_pretrained(
        tiny_bert_dir,
        pooling=pooling,
        query_prefix=prefixes[0],
        passage_prefix=prefixes[1],
        pool_prefix=pool_prefix,
    )
    model.save(tmp_path / "m")
    st = SentenceTransformer(str(tmp_path / "m"), device="cpu")
    queries = st.encode_query(TEXTS, batch_size=2, convert_to_numpy=True)
    documents = st.encode_document(TEXTS, batch_size=2, convert_to_numpy=True)
    np.testing.assert_allclose(_ours(model, TEXTS, "query"), queries, atol=1e-5)
    np.testing.assert_allclose(_ours(model, TEXTS, "passage"), documents, atol=1e-5)
    if any(prefixes):  # the two sides differ, so a swapped prompt would show
        assert not np.allclose(queries, documents, atol=1e-4)
    # and the settings read back from the sentence-transformers files alone
    (tmp_path / "m" / "rqa_dual_encoder.json").unlink()
    st_only = DualEncoder.from_pretrained(tmp_path / "m")
    for key in ("pooling", "query_prefix", "passage_prefix", "pool_prefix"):
        assert getattr(st_only.settings, key) == getattr(model.settings, key), key
    np.testing.assert_allclose(_ours(st_only, TEXTS, "query"), queries, atol=1e-5)


def test_prompt_pooling_has_no_sentence_transformers_files_but_round_trips(tiny_bert_dir, tmp_path):
    model = DualEncoder.from_pretrained(tiny_bert_dir, pooling="prompt")
    model.save(tmp_path / "m")
    assert not (tmp_path / "m" / "modules.json").exists()
    again = DualEncoder.from_pretrained(tmp_path / "m")
    assert again.settings == model.settings
    np.testing.assert_array_equal(_ours(again, TEXTS), _ours(model, TEXTS))


def test_bf16_encoding_keeps_each_sides_prefix_length(tiny_bert_dir):
    model = DualEncoder.from_pretrained(
        tiny_bert_dir, query_prefix="q: ", passage_prefix=INSTRUCTIONS[1], pool_prefix=False
    )
    for side in ("query", "passage"):
        fp32 = _ours(model, TEXTS, side)
        if side == "query":
            bf16 = encode_queries(model, TEXTS, 3, show_progress=False, precision="bf16")
        else:
            titles = [None] * len(TEXTS)
            bf16 = encode_passages(model, titles, TEXTS, 3, show_progress=False, precision="bf16")
        assert np.min(np.sum(fp32 * bf16, axis=1)) > 0.99


def test_settings_that_cannot_work_are_rejected(tiny_bert_dir):
    with pytest.raises(ValueError, match="pool_prefix=False .* needs an averaging pooling"):
        DualEncoder.from_pretrained(tiny_bert_dir, pooling="cls", pool_prefix=False)
    with pytest.raises(ValueError, match="one \\[X\\] and one \\[MASK\\]"):
        DualEncoder.from_pretrained(tiny_bert_dir, pooling="prompt", prompt_template="[X] .")
    with pytest.raises(ValueError, match="\\[MASK\\] after \\[X\\]"):
        DualEncoder.from_pretrained(tiny_bert_dir, pooling="prompt", prompt_template="[MASK] [X]")


def test_unsupported_sentence_transformers_modules_are_errors(tiny_bert_dir, tmp_path):
    model = DualEncoder.from_pretrained(tiny_bert_dir)
    model.save(tmp_path / "m")
    modules = json.loads((tmp_path / "m" / "modules.json").read_text())
    modules.append({"idx": 3, "name": "3", "path": "3_LayerNorm", "type": "x.LayerNorm"})
    (tmp_path / "m" / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ValueError, match="module LayerNorm is not supported"):
        read_st_settings(tmp_path / "m")
    pooling = tmp_path / "m" / "1_Pooling" / "config.json"
    pooling.write_text(json.dumps({"word_embedding_dimension": 32, "pooling_mode_max_tokens": 1}))
    with pytest.raises(ValueError, match="pooling mode 'max' is not supported"):
        read_st_settings(tmp_path / "m")
