import numpy as np
import pytest

from tf_pathattr.engine.quadrature import RULES, quadrature


@pytest.mark.parametrize("rule", RULES)
@pytest.mark.parametrize("n", [2, 3, 4, 50, 51])
def test_weights_sum_to_one_and_alphas_sorted_in_unit_interval(rule, n):
    a, w = quadrature(rule, n)
    assert a.shape == w.shape == (n,)
    assert abs(w.sum() - 1.0) < 1e-12
    assert np.all(np.diff(a) > 0)
    assert a.min() >= 0.0 and a.max() <= 1.0
    assert np.all(w > 0)


def test_gauss_legendre_four_nodes_match_spec():
    a, w = quadrature("gausslegendre", 4)
    np.testing.assert_allclose(a, [0.06943184, 0.33000948, 0.66999052, 0.93056816], atol=1e-8)
    np.testing.assert_allclose(w, [0.17392742, 0.32607258, 0.32607258, 0.17392742], atol=1e-8)


def test_rule_nodes():
    np.testing.assert_allclose(quadrature("riemann_left", 4)[0], [0, 0.25, 0.5, 0.75])
    np.testing.assert_allclose(quadrature("riemann_right", 4)[0], [0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(quadrature("riemann_middle", 4)[0], [0.125, 0.375, 0.625, 0.875])
    a, w = quadrature("riemann_trapezoid", 4)
    np.testing.assert_allclose(a, [0, 1 / 3, 2 / 3, 1])
    np.testing.assert_allclose(w, [1 / 6, 1 / 3, 1 / 3, 1 / 6])
    a, w = quadrature("pair", 4)
    np.testing.assert_allclose(w, [0.25] * 4)


@pytest.mark.parametrize("rule", ["riemann_trapezoid", "pair"])
def test_rules_with_both_ends_need_two_points(rule):
    with pytest.raises(ValueError, match="n_steps must be >= 2"):
        quadrature(rule, 1)


def test_bad_rule_and_bad_n():
    with pytest.raises(ValueError, match="method must be one of"):
        quadrature("simpson", 8)
    with pytest.raises(TypeError, match="n_steps must be an int"):
        quadrature("gausslegendre", 8.0)
    with pytest.raises(ValueError, match="n_steps must be >= 1"):
        quadrature("riemann_left", 0)


@pytest.mark.parametrize("n", [2, 3, 5])
def test_gauss_legendre_integrates_cubics_exactly(n):
    a, w = quadrature("gausslegendre", n)
    assert abs(np.sum(w * a**3) - 0.25) < 1e-14
