"""Weight averaging: every averaged weight against numpy's weighted mean of the saved files, the
weights' normalisation, and the refusals (other shapes, other settings, integer buffers that
differ, fewer than 2 models).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.numpy import load_file

from retrieval.model_soup import _RunningMean, _tensors, average_models, soup_weights
from retrieval.models import DualEncoder
from tests.helpers_models import perturbed_copy


def test_every_weight_is_numpys_weighted_mean_of_the_saved_models(tiny_bert_dir, tmp_path):
    folders = [tmp_path / f"m{i}" for i in range(3)]
    for i, folder in enumerate(folders):
        perturbed_copy(tiny_bert_dir, folder, seed=i)
    weights = soup_weights(3, [1, 2, 5])
    soup = average_models((DualEncoder.from_pretrained(f) for f in folders), weights)
    soup.save(tmp_path / "soup")
    saved = [load_file(str(f / "model.safetensors")) for f in folders]
    ours = load_file(str(tmp_path / "soup" / "model.safetensors"))
    assert ours.keys() == saved[0].keys()
    moved = 0
    for key, value in ours.items():
        expected = sum(w * s[key].astype(np.float64) for w, s in zip([1 / 8, 2 / 8, 5 / 8], saved))
        np.testing.assert_allclose(value, expected, rtol=1e-6, atol=1e-7, err_msg=key)
        moved += not np.allclose(value, saved[0][key])
    assert moved == len(ours)  # no weight was left as model 0's


def test_weights_are_scaled_to_sum_to_one_and_checked():
    assert soup_weights(4) == [0.25] * 4
    assert soup_weights(2, [1, 3]) == [0.25, 0.75]
    with pytest.raises(ValueError, match="at least 2 models"):
        soup_weights(1)
    with pytest.raises(ValueError, match="2 weights for 3 models"):
        soup_weights(3, [1, 1])
    with pytest.raises(ValueError, match=">= 0 and not all 0"):
        soup_weights(2, [1, -1])


def test_models_of_other_shapes_or_settings_are_refused(tiny_bert_dir, tmp_path):
    from transformers import AutoTokenizer, BertConfig, BertModel

    wider = tmp_path / "wider"
    config = BertConfig.from_pretrained(tiny_bert_dir)
    config.intermediate_size = 48
    BertModel(config).save_pretrained(wider)
    AutoTokenizer.from_pretrained(tiny_bert_dir).save_pretrained(wider)
    pair = [DualEncoder.from_pretrained(tiny_bert_dir), DualEncoder.from_pretrained(wider)]
    with pytest.raises(ValueError, match=r"model 1: .*intermediate.* has shape \(48, 32\)"):
        average_models(pair, [0.5, 0.5])
    cls = perturbed_copy(tiny_bert_dir, tmp_path / "cls", 0, pooling="cls")
    with pytest.raises(ValueError, match="model 1 has pooling = 'cls', model 0 'mean'"):
        average_models([DualEncoder.from_pretrained(tiny_bert_dir), cls], [0.5, 0.5])


def test_integer_buffers_must_agree():
    first = {"w": torch.ones(2), "ids": torch.arange(3)}
    running = _RunningMean(first, 0.5)
    running.add({"w": torch.zeros(2), "ids": torch.arange(3)}, 0.5, 1)
    assert torch.equal(running.result("w"), torch.full((2,), 0.5))
    assert torch.equal(running.result("ids"), first["ids"])
    with pytest.raises(ValueError, match="model 2: ids differs from model 0 and is not float"):
        running.add({"w": torch.zeros(2), "ids": torch.arange(3) + 1}, 0.5, 2)


def test_a_shared_tower_is_summed_once_and_separate_towers_both(tiny_bert_dir):
    shared = _tensors(DualEncoder.from_pretrained(tiny_bert_dir))
    assert len({t.data_ptr() for t in shared.values()}) == len(shared)
    assert not any(name.startswith("passage_model.") for name in shared)
    separate = _tensors(DualEncoder.from_pretrained(tiny_bert_dir, shared=False))
    towers = {name.split(".")[0] for name in separate}
    assert {"query_model", "passage_model"} <= towers
    assert len(separate) == 2 * len(shared)
