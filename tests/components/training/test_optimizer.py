"""Parameter groups of the training optimizer (components/training/optimizer.py); that every optimizer
variant trains to the same weights is in test_engine.py, where a Trainer runs them."""

from torch import nn

from components.training.optimizer import param_groups


def test_param_groups_are_bounded_and_hold_every_parameter_once():
    model = nn.Sequential(nn.Linear(10, 10), nn.Linear(10, 30), nn.LayerNorm(30), nn.Linear(30, 2))
    model[3].weight.requires_grad_(False)
    two = param_groups(model, weight_decay=0.1)
    assert [g["weight_decay"] for g in two] == [0.1, 0.0]
    assert all(p.ndim >= 2 for p in two[0]["params"]) and all(p.ndim < 2 for p in two[1]["params"])

    small = param_groups(model, weight_decay=0.1, group_elements=150)
    seen = [id(p) for g in small for p in g["params"]]
    trainable = [id(p) for p in model.parameters() if p.requires_grad]
    assert sorted(seen) == sorted(trainable) and len(seen) == len(set(seen))  # each once, frozen left out
    for g in small:  # at most 150 elements, unless one tensor alone is larger (the 10x30 weight: 300)
        size = sum(p.numel() for p in g["params"])
        assert size <= 150 or len(g["params"]) == 1
    assert len(small) > len(two)
    assert {g["weight_decay"] for g in small if all(p.ndim >= 2 for p in g["params"])} == {0.1}
