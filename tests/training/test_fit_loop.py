import pytest
import torch

from recsys_peft.export.exporter import weights_hash
from recsys_peft.models.two_tower import TwoTowerModel
from recsys_peft.training.losses import item_log_q
from recsys_peft.training.loop import TrainConfig, WeightAverage, fit
from recsys_peft.training.pretrain import pretrain_two_tower, training_examples

EXAMPLES = 256


@pytest.fixture
def setup(snapshot, tiny_config):
    """A fresh seeded model, 256 training examples and their log q."""
    torch.manual_seed(0)
    model = TwoTowerModel(tiny_config)
    examples = training_examples(snapshot, tiny_config.history_length, snapshot.split.train_positions[:EXAMPLES])
    log_q = item_log_q(examples.targets, tiny_config.num_items)
    return model, examples, log_q, snapshot.features.item_tags


def scripted_validation(model, scores):
    """Build a validate callback that returns ``scores`` in turn and records the weights at each call."""
    remaining = iter(scores)
    states = []

    def validate():
        states.append({n: p.detach().clone() for n, p in model.named_parameters()})
        return next(remaining)

    return validate, states


def test_fit_restores_best_epoch(setup):
    model, examples, log_q, tags = setup
    validate, states = scripted_validation(model, [0.1, 0.5, 0.2, 0.3])
    parameters = [p for p in model.parameters() if p.numel() > 0]

    result = fit(model, parameters, examples, tags, log_q, validate,
                 TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2, patience=3))

    assert result.best_epoch == 1
    assert result.best_score == 0.5
    assert result.epochs_run == 3
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, states[1][name]), name
    # The last epoch did move the weights, so restoring was needed.
    assert not torch.equal(model.user_out.base.weight, states[3]["user_out.base.weight"])
    assert not model.training


def test_fit_stops_after_patience(setup):
    model, examples, log_q, tags = setup
    validate, states = scripted_validation(model, [0.5, 0.4, 0.4, 0.9, 0.9])
    parameters = [p for p in model.parameters() if p.numel() > 0]
    records = []

    result = fit(model, parameters, examples, tags, log_q, validate,
                 TrainConfig(epochs=10, batch_size=64, patience=2), on_epoch=records.append)

    assert result.epochs_run == 2
    assert result.best_epoch == 0
    assert [r["epoch"] for r in records] == [1, 2]
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, states[0][name]), name


def test_fit_trains_given_parameters(setup):
    model, examples, log_q, tags = setup
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    validate, _ = scripted_validation(model, [0.0, 1.0])

    fit(model, list(model.item_mlp.parameters()), examples, tags, log_q, validate,
        TrainConfig(epochs=1, batch_size=64, learning_rate=1e-2))

    for name, parameter in model.named_parameters():
        if name.startswith("item_mlp."):
            assert not torch.equal(parameter, before[name]), name
        else:
            assert torch.equal(parameter, before[name]), name


def test_pretrain_loss_decreases(pretrained):
    history = pretrained.result.history
    losses = [record["loss"] for record in history[1:]]

    assert len(losses) == 3
    assert losses[-1] < losses[0]
    assert pretrained.result.best_score > history[0]["valid_ndcg@10"]


def test_pretrain_same_seed_same_weights(snapshot, tiny_config, pretrained):
    again = pretrain_two_tower(snapshot, tiny_config, TrainConfig(epochs=3, batch_size=64, learning_rate=5e-3,
                                                                  patience=3, seed=0))

    assert weights_hash(again.model) == weights_hash(pretrained.model)
    assert again.result.history[-1]["loss"] == pretrained.result.history[-1]["loss"]


@pytest.mark.parametrize(("arguments", "message"), [
    ({"epochs": 0}, r"TrainConfig needs epochs >= 1, batch_size >= 2 and patience >= 1, got epochs=0, "
                    r"batch_size=512, patience=3"),
    ({"batch_size": 1}, r"got epochs=40, batch_size=1, patience=3"),
    ({"patience": 0}, r"got epochs=40, batch_size=512, patience=0"),
    ({"learning_rate": 0.0}, r"TrainConfig\.learning_rate must be positive, got 0\.0"),
    ({"learning_rate": -1e-3}, r"TrainConfig\.learning_rate must be positive, got -0\.001"),
])
def test_train_config_rejects_invalid(arguments, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**arguments)


def test_weight_average_follows_its_formula():
    weight = torch.nn.Parameter(torch.zeros(3))
    average = WeightAverage([weight], decay=0.75)
    with torch.no_grad():
        weight.fill_(4.0)
    average.update()
    assert torch.equal(average.average[0], torch.full((3,), 1.0))   # 0.75 * 0 + 0.25 * 4

    average.swap()
    assert torch.equal(weight.detach(), torch.full((3,), 1.0))
    average.swap()
    assert torch.equal(weight.detach(), torch.full((3,), 4.0))


def test_fit_validates_and_keeps_averaged_weights(setup):
    model, examples, log_q, tags = setup
    validate, states = scripted_validation(model, [0.1, 0.2, 0.5, 0.3])
    parameters = [p for p in model.parameters() if p.numel() > 0]
    start = {n: p.detach().clone() for n, p in model.named_parameters()}

    result = fit(model, parameters, examples, tags, log_q, validate,
                 TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2, patience=3, ema_decay=0.9))

    assert result.best_epoch == 2
    for name, parameter in model.named_parameters():
        assert torch.equal(parameter, states[2][name]), name
    # With decay 0.9 over a few steps the average stays between the start and the trained
    # weights; the raw weights would have moved further.
    raw = fit_raw_weights(setup)
    moved_average = (model.user_out.base.weight - start["user_out.base.weight"]).norm()
    moved_raw = (raw - start["user_out.base.weight"]).norm()
    assert 0 < moved_average < moved_raw


def fit_raw_weights(setup) -> torch.Tensor:
    """The user tower's output weight after the same two epochs without averaging."""
    model, examples, log_q, tags = setup
    torch.manual_seed(0)
    fresh = TwoTowerModel(model.config)
    parameters = [p for p in fresh.parameters() if p.numel() > 0]
    validate, _ = scripted_validation(fresh, [0.1, 0.2, 0.5, 0.3])
    fit(fresh, parameters, examples, tags, log_q, validate,
        TrainConfig(epochs=3, batch_size=64, learning_rate=1e-2, patience=3))
    return fresh.user_out.base.weight.detach()


def test_ema_decay_is_checked():
    with pytest.raises(ValueError, match=r"ema_decay must be in \[0, 1\), got 1.0"):
        TrainConfig(ema_decay=1.0)
