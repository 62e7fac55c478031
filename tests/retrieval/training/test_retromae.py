"""RetroMAE pre-training (``kind: retromae``): the masking collator's ratios, labels and seeding;
the loss against a hand-written computation (float64); the decoder's information path; and a
real run of `rqa train-retromae` on SciFact that learns, exports a plain encoder folder, and
resumes after a kill -9 to the uninterrupted weights."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from retrieval.errors import ConfigError
from retrieval.models import DualEncoder
from retrieval.training.config import RetroMAEConfig, validate_train_config
from retrieval.training.passages import PassageStore
from retrieval.training.retromae.build import build_retromae_training
from retrieval.training.retromae.masking import IGNORE, mask_count
from tests.helpers_cli import finish, kill_after_first_checkpoint, rqa

ROWS = np.arange(40, 52)  # twelve SciFact passages


def retromae_config(tables: Path, model: Path, out: Path, **extra) -> RetroMAEConfig:
    raw = {
        "kind": "retromae",
        "model": str(model),
        "output_dir": str(out),
        "data": {"tables": str(tables)},
        "model_settings": {"passage_max_len": 40},
        **extra,
    }
    return validate_train_config(raw)


@pytest.fixture(scope="module")
def store(scifact_tables, tmp_path_factory) -> PassageStore:
    return PassageStore(scifact_tables / "corpus", tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def built(scifact_tables, tiny_bert_dir, store, tmp_path_factory):
    """``(module, collate)`` of a RetroMAE run on the tiny BERT."""
    torch.manual_seed(0)
    config = retromae_config(scifact_tables, tiny_bert_dir, tmp_path_factory.mktemp("out"))
    module, collate, models = build_retromae_training(config, store)
    assert set(models) == {"model"} and models["model"] is module.model
    return module, collate


def originals(collate) -> dict:
    titles, texts = collate.passages.get(ROWS)
    return collate.model.tokenize_passages(titles, texts)


def test_each_view_masks_its_ratio_of_real_tokens_and_labels_only_those(built):
    _, collate = built
    tokens, batch = originals(collate), collate(ROWS, step=3)
    ids = tokens["input_ids"]
    special = torch.isin(ids, torch.tensor(collate.model.tokenizer.all_special_ids))
    maskable = tokens["attention_mask"].bool() & ~special
    encoder, decoder = batch["encoder"], batch["decoder"]
    for view, ratio in ((encoder, 0.3), (decoder, 0.5)):
        labelled = view["labels"] != IGNORE
        assert not (labelled & ~maskable).any()  # never [CLS], [SEP] or padding
        assert torch.equal(view["labels"][labelled], ids[labelled])
        for row in range(len(ROWS)):
            real = int(maskable[row].sum())
            count = int(labelled[row].sum())
            assert count == mask_count(real, ratio) and abs(count - ratio * real) <= 0.5
    dec_masked = decoder["labels"] != IGNORE
    assert (decoder["input_ids"][dec_masked] == collate.mask_id).all()
    assert torch.equal(decoder["input_ids"][~dec_masked], ids[~dec_masked])
    enc_masked = encoder["labels"] != IGNORE
    assert torch.equal(encoder["input_ids"][~enc_masked], ids[~enc_masked])
    as_mask = (encoder["input_ids"][enc_masked] == collate.mask_id).float().mean()
    assert 0.65 < as_mask < 0.95  # BERT's 80% [MASK]; the rest random or kept
    assert torch.equal(encoder["attention_mask"], tokens["attention_mask"])


def test_the_same_step_and_seed_mask_alike_and_another_step_does_not(built):
    _, collate = built
    first, again, later = collate(ROWS, 7), collate(ROWS, 7), collate(ROWS, 8)
    for view in ("encoder", "decoder"):
        for name, tensor in first[view].items():
            assert torch.equal(tensor, again[view][name]), (view, name)
        assert not torch.equal(first[view]["labels"], later[view]["labels"])
    # a row's masks depend on (seed, step, row), not on the rows batched with it
    alone = collate(ROWS[3:4], 7)["decoder"]["labels"][0]
    assert torch.equal(alone, first["decoder"]["labels"][3][: len(alone)])


def test_the_loss_is_encoder_mlm_plus_decoder_mlm_computed_by_hand(
    scifact_tables, tiny_bert_dir, store, tmp_path
):
    for pooling in ("mean", "cls"):
        torch.manual_seed(0)
        config = retromae_config(scifact_tables, tiny_bert_dir, tmp_path, model_settings={
            "passage_max_len": 40, "pooling": pooling})  # fmt: skip
        module, collate, _ = build_retromae_training(config, store)
        module.double().eval()  # no dropout: the same numbers twice
        batch = collate(ROWS[:5], step=1)
        got = module.losses(**batch)
        expected = hand_losses(module, batch, pooling)
        for part in ("encoder", "decoder"):
            torch.testing.assert_close(got[part], expected[part], rtol=1e-10, atol=1e-12)
        total = module(**batch)
        torch.testing.assert_close(total, expected["encoder"] + expected["decoder"])
        assert 9 < expected["encoder"].item() < 12  # ~ln(30522): a fresh head guesses


def hand_losses(module, batch: dict, pooling: str) -> dict[str, torch.Tensor]:
    """RetroMAE's two losses from the model's parts (encoder, head weights, embeddings, decoder
    layer), with pooling, the decoder's input, its attention mask and the cross-entropy
    written out here."""
    encoder, dec = module.encoder, batch["decoder"]
    ids, attention = batch["encoder"]["input_ids"], batch["encoder"]["attention_mask"]
    states = encoder(input_ids=ids, attention_mask=attention).last_hidden_state
    weights = attention.unsqueeze(-1).double()
    if pooling == "mean":
        sentence = (states * weights).sum(1) / weights.sum(1)
    else:
        sentence = states[:, 0]
    copy = encoder.embeddings(input_ids=dec["input_ids"])
    hidden = torch.cat([sentence[:, None], copy[:, 1:]], dim=1)
    blocked = (1.0 - attention[:, None, None, :].double()) * torch.finfo(torch.float64).min
    rebuilt = module.decoder.layer(hidden, attention_mask=blocked)
    rebuilt = rebuilt[0] if isinstance(rebuilt, tuple) else rebuilt
    return {
        "encoder": cross_entropy(vocab_scores(module, states), batch["encoder"]["labels"]),
        "decoder": cross_entropy(vocab_scores(module, rebuilt), dec["labels"]),
    }


def vocab_scores(module, states: torch.Tensor) -> torch.Tensor:
    """BERT's MLM head: dense, GELU, LayerNorm, then the (tied) word embeddings plus a bias."""
    head = module.head.predictions
    norm = head.transform.LayerNorm
    x = F.gelu(F.linear(states, head.transform.dense.weight, head.transform.dense.bias))
    x = F.layer_norm(x, x.shape[-1:], norm.weight, norm.bias, norm.eps)
    return x @ module.encoder.embeddings.word_embeddings.weight.T + head.bias


def cross_entropy(scores: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    keep = labels != IGNORE
    log_p = torch.log_softmax(scores[keep], dim=-1)
    return -log_p.gather(1, labels[keep][:, None]).mean()


def test_the_decoder_reaches_the_encoder_layers_only_through_the_sentence_embedding(built):
    """d L_dec / d theta_enc == (d L_dec / d e) . (d e / d theta_enc) for the encoder's
    transformer layers (the embedding table is shared with the decoder's input, as in the
    paper, so it is left out): no other path carries passage tokens to the decoder."""
    module, collate = built
    module.double().eval()
    try:
        batch = collate(ROWS[:6], step=2)
        enc, dec = batch["encoder"], batch["decoder"]
        _, sentence = module.encode(enc["input_ids"], enc["attention_mask"])
        copy = module.encoder.embeddings(input_ids=dec["input_ids"])
        rebuilt = module.decoder(sentence, copy, enc["attention_mask"])
        decoder_loss = module.masked_lm(rebuilt, dec["labels"])
        torch.testing.assert_close(decoder_loss, module.losses(**batch)["decoder"])
        layers = list(module.encoder.encoder.layer.parameters())
        direct = torch.autograd.grad(decoder_loss, layers, retain_graph=True)
        (through_e,) = torch.autograd.grad(decoder_loss, sentence, retain_graph=True)
        chained = torch.autograd.grad(sentence, layers, grad_outputs=through_e)
        for a, b in zip(direct, chained):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
        assert sum(float(g.abs().sum()) for g in direct) > 0  # and that path is used
        blind = module.decoder(torch.zeros_like(sentence), copy, enc["attention_mask"])
        # what the decoder predicts at its masked positions depends on e: slightly, as its fresh
        # N(0, 0.02) weights attend almost uniformly, but far above float64 noise
        masked = dec["labels"] != IGNORE
        assert (blind[masked] - rebuilt[masked]).abs().max() > 1e-6
    finally:
        module.float()


def test_head_lr_trains_the_head_and_decoder_but_not_the_tied_embeddings(built):
    from retrieval.training.optimizer import param_groups

    module, _ = built
    body, head = param_groups(module, lr=5e-5, weight_decay=0.01, head_lr=1e-3)
    assert (body["lr"], head["lr"]) == (5e-5, 1e-3)
    in_head = {id(p) for p in head["params"]}
    fresh = [*module.decoder.parameters(), module.head.predictions.transform.dense.weight]
    assert all(id(p) in in_head for p in fresh)
    embeddings = module.encoder.embeddings.word_embeddings.weight
    assert module.head.predictions.decoder.weight is embeddings and id(embeddings) not in in_head
    assert {id(p) for p in body["params"]} == {id(p) for p in module.encoder.parameters()}


def test_config_fills_the_defaults_and_refuses_what_retromae_cannot_use(scifact_tables, tmp_path):
    config = retromae_config(scifact_tables, tmp_path, tmp_path)
    assert config.loss == "masked_lm"
    assert (config.retromae.encoder_mask_ratio, config.retromae.decoder_mask_ratio) == (0.3, 0.5)
    cases = {
        "key 'retromae': kind dual does not take it (kind retromae only)": {
            "kind": "dual", "retromae": {}},
        "does not train a retromae model": {"loss": "cross_batch"},
        "key 'loss_args.temperature'": {"loss_args": {"temperature": 0.1}},
        "key 'retromae.decoder_mask_ratio'": {"retromae": {"decoder_mask_ratio": 1.5}},
        "key 'data.examples': kind retromae does not take it": {
            "data": {"tables": str(scifact_tables), "examples": str(scifact_tables)}},
    }  # fmt: skip
    for message, change in cases.items():
        path = tmp_path / "bad.yaml"
        raw = {"kind": "retromae", "model": "m", "output_dir": str(tmp_path),
               "data": {"tables": str(scifact_tables)}, **change}  # fmt: skip
        path.write_text(yaml.safe_dump(raw))
        from retrieval.training.config import load_train_config

        with pytest.raises(ConfigError) as err:
            load_train_config(path)
        assert message in str(err.value) and "\n" not in str(err.value), str(err.value)


def test_the_shipped_scifact_config_is_a_valid_retromae_run():
    from pipelines.launch_settings import split_launch_keys

    path = Path(__file__).resolve().parents[3] / "configs" / "train" / "scifact_retromae.yaml"
    train, launch = split_launch_keys(yaml.safe_load(path.read_text()))
    config = validate_train_config(train)
    assert (config.kind, config.loss, config.model_settings.pooling) == (
        "retromae", "masked_lm", "mean")  # fmt: skip
    assert launch == {"workers": 2, "launcher": "ray"}


def write_config(tmp_path: Path, name: str, tables: Path, model: Path) -> Path:
    config = {
        "kind": "retromae",
        "model": str(model),
        "output_dir": str(tmp_path / name),
        "data": {"tables": str(tables), "max_examples": 64},
        "model_settings": {"passage_max_len": 48, "query_max_len": 16},
        "batch_size": 8,
        "epochs": 4,
        "max_steps": 30,
        "lr": 1e-3,
        "warmup_ratio": 0.0,
        "log_every": 1,
        "checkpoint_every": 5,
        "launcher": "local",
    }
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def whole_run(tmp_path_factory, scifact_tables, tiny_bert_dir) -> Path:
    tmp = tmp_path_factory.mktemp("retromae-run")
    finish(rqa("train-retromae", "--config", str(write_config(tmp, "whole", scifact_tables,
                                                                tiny_bert_dir))))  # fmt: skip
    return tmp / "whole"


@pytest.mark.slow  # a whole `rqa train-retromae` run, ~9 s
def test_a_short_run_lowers_the_loss_and_exports_a_plain_encoder(whole_run, tiny_bert_dir):
    from sentence_transformers import SentenceTransformer

    from retrieval.encoding import encode_passages

    losses = [json.loads(line)["loss"] for line in (whole_run / "train_log.jsonl").open()]
    assert len(losses) == 30
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 1.0, losses
    folder = whole_run / "model"
    model = DualEncoder.from_pretrained(folder)
    start = DualEncoder.from_pretrained(tiny_bert_dir).state_dict()
    trained = model.state_dict()
    assert trained.keys() == start.keys()  # the encoder alone: no MLM head, no decoder
    assert any(not torch.equal(start[k], trained[k]) for k in start), "training changed nothing"
    texts = ["Aspirin lowers the risk of a second heart attack.", "The Nile is a long river."]
    ours = encode_passages(model, [None, None], texts, show_progress=False)
    theirs = SentenceTransformer(str(folder), device="cpu").encode(texts, convert_to_numpy=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    card = (folder / "README.md").read_text()
    assert "retromae" in card and f"base_model: {tiny_bert_dir}" in card


@pytest.mark.slow
def test_kill9_and_resume_gives_the_uninterrupted_weights(
    whole_run, tmp_path, scifact_tables, tiny_bert_dir
):
    crashed = write_config(tmp_path, "crashed", scifact_tables, tiny_bert_dir)
    proc = rqa("train-retromae", "--config", str(crashed))
    kill_after_first_checkpoint(proc, tmp_path / "crashed" / "checkpoints")
    finish(rqa("train-retromae", "--config", str(crashed)))
    summary = json.loads((tmp_path / "crashed" / "train_summary.json").read_text())
    assert summary["steps"] == 30 and 5 <= summary["resumed_from"] < 30
    expected = DualEncoder.from_pretrained(whole_run / "model").state_dict()
    got = DualEncoder.from_pretrained(tmp_path / "crashed" / "model").state_dict()
    for key in expected:
        torch.testing.assert_close(got[key], expected[key], rtol=0, atol=1e-6, msg=key)
