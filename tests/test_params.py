"""Parameters are validated strictly, and presets/solvers combine as documented."""

from __future__ import annotations

import pytest

from nstd.errors import ParamError
from nstd.params import SOLVERS, parse_set, resolve


def test_defaults_are_the_fast_solver_on_the_origin_objective():
    p = resolve({})
    assert p.solver == "fast" and p.optimizer == "lbfgs" and p.init == "content"
    assert p.content_weight == 10 and p.style_weight == 40 and p.pooling == "avg"


def test_origin_preset_is_the_origin_recipe():
    p = resolve({"preset": "origin"})
    assert (p.optimizer, p.learning_rate, p.init, p.noise_ratio, p.iterations, p.size, p.scales, p.clip) == \
        ("adam", 2.0, "noise", 0.6, 200, 400, (1.0,), False)
    assert dict(p.style_layers) == {f"conv{i}_1": 0.2 for i in range(1, 6)}


def test_origin_objective_with_fast_solver_and_explicit_keys_win():
    p = resolve({"preset": "origin", "solver": "fast", "iterations": 7})
    assert p.optimizer == SOLVERS["fast"]["optimizer"] and p.iterations == 7
    assert p.size == 400 and p.pooling == "avg" and p.content_weight == 10


@pytest.mark.parametrize("raw, needle", [
    ({"iteratons": 5}, "Did you mean 'iterations'"),
    ({"pooling": "min"}, "avg, max"),
    ({"iterations": 0}, "out of range"),
    ({"iterations": 2.5}, "integer"),
    ({"style_layers": ["conv9_9"]}, "unknown layer"),
    ({"scales": [1.0, 0.5]}, "increase"),
    ({"preserve_colors": "yes"}, "true or false"),
])
def test_bad_values_name_the_key_and_what_is_allowed(raw, needle):
    with pytest.raises(ParamError, match=needle) as err:
        resolve(raw, where="job.yaml")
    assert "job.yaml" in str(err.value)


def test_list_of_layers_gets_equal_weights():
    p = resolve({"style_layers": ["conv1_1", "conv2_1"]})
    assert p.style_layers == (("conv1_1", 0.5), ("conv2_1", 0.5))


def test_parse_set_reads_yaml_values():
    assert parse_set(["size=64", "scales=[0.5, 1.0]", "preserve_colors=true", "init=content"]) == {
        "size": 64, "scales": [0.5, 1.0], "preserve_colors": True, "init": "content"}
    with pytest.raises(ParamError, match="key=value"):
        parse_set(["size"])


def test_every_parameter_is_in_exactly_one_group():
    import dataclasses

    from nstd.params import OBJECTIVE_KEYS, SOLVER_KEYS, Params

    output = {"size", "seed", "preserve_colors", "preview_every", "preset", "solver"}
    fields = {f.name for f in dataclasses.fields(Params)}
    groups = [set(OBJECTIVE_KEYS), set(SOLVER_KEYS), output]
    assert set().union(*groups) == fields
    assert sum(len(g) for g in groups) == len(fields)  # no key in two groups
    for name, recipe in SOLVERS.items():  # a solver recipe never changes the objective
        assert not set(recipe) & set(OBJECTIVE_KEYS), name
