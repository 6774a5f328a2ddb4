"""Reference pickers for IG2: other_class and top_k_classes."""

import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.testing import models as zoo


@pytest.fixture
def pool():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 4)  # 5 classes x 4 samples
    x = rng.normal(size=(20, 3)).astype(np.float32)
    x[:, 0] = y  # the label can be read back from the sample
    return x, y


def test_other_class_labels_shape_and_reproducibility(pool):
    x, y = pool
    refs = tpa.references.other_class(x, y, [0, 3, 3], k=6, seed=1)
    assert refs.shape == (3, 6, 3) and refs.dtype == np.float32
    labels = refs[..., 0]
    assert np.all(labels[0] != 0) and np.all(labels[1:] != 3)
    for b in range(3):  # without replacement
        assert len({tuple(r) for r in refs[b]}) == 6
    np.testing.assert_array_equal(refs, tpa.references.other_class(x, y, [0, 3, 3], k=6, seed=1))
    assert not np.array_equal(refs, tpa.references.other_class(x, y, [0, 3, 3], k=6, seed=2))
    one_hot = np.eye(5)[y]
    np.testing.assert_array_equal(tpa.references.other_class(x, one_hot, 2, k=16)[..., 0] != 2, True)


def test_other_class_errors(pool):
    x, y = pool
    with pytest.raises(ValueError, match="only 16 pool samples"):
        tpa.references.other_class(x, y, [1], k=17)
    with pytest.raises(ValueError, match="y_pool"):
        tpa.references.other_class(x, y[:5], [1], k=2)
    with pytest.raises(ValueError, match="k must be"):
        tpa.references.other_class(x, y, [1], k=0)


def ranking_model():
    """Linear model on 3 features whose logits rank the 5 classes in a known order per explicand."""
    w = np.zeros((3, 5), np.float32)
    w[1] = [5.0, 4.0, 3.0, 2.0, 1.0]  # feature 1 > 0: ranking 0,1,2,3,4
    w[2] = [1.0, 2.0, 3.0, 4.0, 5.0]  # feature 2 > 0: ranking 4,3,2,1,0
    model, _ = zoo.linear_model(w)
    return model


def test_top_k_classes_picks_ranks_two_to_four(pool):
    x, y = pool
    model = ranking_model()
    inputs = np.array([[0, 1, 0], [0, 0, 1]], np.float32)
    refs = tpa.references.top_k_classes(model, inputs, x, y)  # default: ranks 2nd-4th, all 4 per class
    assert refs.shape == (2, 12, 3)
    assert sorted(refs[0, :, 0].tolist()) == sorted([1.0, 2.0, 3.0] * 4)
    assert sorted(refs[1, :, 0].tolist()) == sorted([3.0, 2.0, 1.0] * 4)
    refs = tpa.references.top_k_classes(model, inputs, x, y, classes=[1], per_class=2, seed=3)
    assert refs.shape == (2, 2, 3)
    assert np.all(refs[0, :, 0] == 1) and np.all(refs[1, :, 0] == 3)
    refs = tpa.references.top_k_classes(model, inputs, x, y, classes=slice(1, 3), k=5)
    assert refs.shape == (2, 5, 3)
    assert set(refs[0, :, 0]) <= {1.0, 2.0} and set(refs[1, :, 0]) <= {3.0, 2.0}
    # usable as per-explicand IG2 references
    attr = tpa.ig2(model, inputs, 0, references=refs, step_size=0.1, n_steps=5)
    assert attr.shape == inputs.shape


def test_top_k_classes_errors(pool):
    x, y = pool
    model = ranking_model()
    inputs = np.array([[0, 1, 0]], np.float32)
    with pytest.raises(ValueError, match="per_class=5"):
        tpa.references.top_k_classes(model, inputs, x, y, per_class=5)
    with pytest.raises(ValueError, match="k=9"):
        tpa.references.top_k_classes(model, inputs, x, y, classes=[1, 2], k=9)
    with pytest.raises(ValueError, match="no samples of classes"):
        tpa.references.top_k_classes(model, inputs, x[y != 2], y[y != 2])
    with pytest.raises(ValueError, match="ranks"):
        tpa.references.top_k_classes(model, inputs, x, y, classes=[7])
    with pytest.raises(ValueError, match="not both"):
        tpa.references.top_k_classes(model, inputs, x, y, per_class=1, k=2)
