"""Parameters are validated strictly, and presets/solvers combine as documented."""

from __future__ import annotations

import pytest

from nstd.errors import ParamError
from nstd.params import SOLVERS, parse_set, resolve

pytestmark = pytest.mark.unit


def test_default_is_the_fast_solver_on_the_normalised_objective_at_strength_one_half():
    p = resolve({})
    assert p.solver == "fast" and p.optimizer == "lbfgs" and p.init == "content"
    assert p.normalize and p.strength == 0.5 and p.pooling == "avg"
    assert (p.content_weight, p.style_weight) == pytest.approx((1 / 2.5, 1.5 / 2.5))


def test_strength_runs_from_content_alone_to_style_alone_monotonically():
    ratios = []
    for s in (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0):
        p = resolve({"strength": s})
        assert p.content_weight + p.style_weight == pytest.approx(1.0)
        ratios.append(p.style_weight)
    assert ratios[0] == 0.0 and ratios[-1] == 1.0
    assert all(a < b for a, b in zip(ratios, ratios[1:]))


def test_own_weights_replace_the_presets_strength_but_not_a_given_one():
    p = resolve({"style_weight": 3.0})
    assert p.strength is None and p.style_weight == 3.0 and p.normalize
    with pytest.raises(ParamError, match="either 'strength' or 'style_weight'"):
        resolve({"strength": 0.4, "style_weight": 3.0})
    with pytest.raises(ParamError, match="normalised objective"):
        resolve({"preset": "origin", "strength": 0.4})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_numbers_are_refused(value):
    with pytest.raises(ParamError, match="finite"):
        resolve({"style_weight": value})


def test_messages_quote_at_most_a_short_piece_of_a_huge_value():
    with pytest.raises(ParamError) as err:
        resolve({"pooling": "x" * 1_000_000})
    assert len(str(err.value)) < 400 and "1,000,002 characters" in str(err.value)


def test_origin_preset_is_the_origin_recipe():
    p = resolve({"preset": "origin"})
    assert (p.optimizer, p.learning_rate, p.init, p.noise_ratio, p.iterations, p.size, p.scales, p.clip) == \
        ("adam", 2.0, "noise", 0.6, 200, 400, (1.0,), False)
    assert dict(p.style_layers) == {f"conv{i}_1": 0.2 for i in range(1, 6)}


def test_the_laplacian_term_is_in_the_default_and_not_in_the_origin_recipe():
    assert resolve({}).laplacian_weight == 1.0 and resolve({"preset": "origin"}).laplacian_weight == 0.0
    assert resolve({"laplacian_weight": 0}).laplacian_weight == 0.0


def test_origin_objective_with_fast_solver_and_explicit_keys_win():
    p = resolve({"preset": "origin", "solver": "fast", "iterations": 7})
    assert p.optimizer == SOLVERS["fast"]["optimizer"] and p.iterations == 7
    assert p.size == 400 and p.pooling == "avg" and p.content_weight == 10


@pytest.mark.parametrize("raw, needle", [
    ({"iteratons": 5}, "Did you mean 'iterations'"),
    ({"pooling": "min"}, "avg, max"),
    ({"iterations": 0}, "out of range"),
    ({"laplacian_weight": 1e300}, "'laplacian_weight' = 1e\\+300 is out of range; allowed: 0 to 100"),
    ({"iterations": 2.5}, "integer"),
    ({"style_layers": ["conv9_9"]}, "unknown layer"),
    ({"scales": [1.0, 0.5]}, "increase"),
    ({"preserve_colors": "yes"}, "choose false, luminance"),
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

    output = {"size", "print", "dpi", "jpeg_quality", "seed", "preserve_colors", "preview_every", "preset", "solver",
              "start", "duration"}  # start, duration: the part of a clip
    fields = {f.name for f in dataclasses.fields(Params)}
    groups = [set(OBJECTIVE_KEYS), set(SOLVER_KEYS), output]
    assert set().union(*groups) == fields
    assert sum(len(g) for g in groups) == len(fields)  # no key in two groups
    for name, recipe in SOLVERS.items():  # a solver recipe never changes the objective
        assert not set(recipe) & set(OBJECTIVE_KEYS), name
