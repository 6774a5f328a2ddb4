import numpy as np
import pytest

import tf_pathattr as tpa
from tf_pathattr.methods.xrai import felzenszwalb_masks, xrai_regions
from tf_pathattr.testing import models as zoo


def smooth_image(rng, size=32):
    """An image with a few flat regions, so the segmentation has structure."""
    img = np.zeros((size, size, 3), np.float32)
    img[: size // 2, : size // 2] = [0.9, 0.2, 0.1]
    img[size // 2 :, size // 3 :] = [0.1, 0.7, 0.3]
    return np.clip(img + 0.05 * rng.random(img.shape), 0, 1).astype("float32")


@pytest.mark.parametrize("algorithm", ["full", "fast"])
def test_parity_with_saliency_xrai_given_the_same_base_attribution(rng, algorithm):
    from tf_pathattr.testing import reference

    img = smooth_image(rng)
    base = rng.normal(size=img.shape).astype("float32")
    params = reference.saliency.XRAIParameters(algorithm=algorithm)
    params.return_xrai_segments = True
    ref = reference.saliency.XRAI().GetMaskWithDetails(img, None, base_attribution=base, extra_parameters=params)
    ours, details = tpa.xrai(None, img[None], 0, base_attribution=base[None], algorithm=algorithm, return_details=True)
    np.testing.assert_allclose(ours.numpy()[0], ref.attribution_mask, rtol=1e-6, atol=1e-7)
    np.testing.assert_array_equal(details["ranks"].numpy()[0], ref.segments)


def test_parity_with_saliency_xrai_including_ig(rng):
    from tf_pathattr.testing import reference

    model = zoo.smooth_cnn(size=32)
    img = smooth_image(rng)
    ref = reference.saliency.XRAI().GetMask(img, reference.call_model_function(model, 3), batch_size=50)
    ours = tpa.xrai(model, img[None], 3).numpy()[0]
    err = np.max(np.abs(ours - ref)) / np.max(np.abs(ref))
    assert err < 1e-4, err


def test_greedy_order_follows_density_on_disjoint_segments():
    attr = np.zeros((10, 10))
    masks = []
    for i, value in enumerate([1.0, 5.0, 3.0, -2.0, 0.5]):
        m = np.zeros((10, 10), bool)
        m[2 * i : 2 * i + 2] = True
        attr[m] = value
        masks.append(m)
    out, ranks = xrai_regions(attr, masks, min_pixel_diff=1)
    assert [int(ranks[2 * i, 0]) for i in range(5)] == [3, 1, 2, 5, 4]
    np.testing.assert_allclose(out, attr)
    # area threshold stops early; the rest gets the mean of the uncovered pixels
    out, ranks = xrai_regions(attr, masks, min_pixel_diff=1, area_threshold=0.3)
    assert int(ranks.max()) == 3
    uncovered = ranks == 3
    np.testing.assert_array_equal(uncovered[:, 0], [True] * 2 + [False] * 4 + [True] * 4)
    np.testing.assert_allclose(out[uncovered], (2 * 1.0 + 2 * -2.0 + 2 * 0.5) / 6)


def test_sum_score_prefers_large_regions():
    attr = np.zeros((4, 10))
    big = np.zeros((4, 10), bool)
    big[:, :8] = True
    small = ~big
    attr[big] = 1.0
    attr[small] = 2.0
    _, r_mean = xrai_regions(attr, [big, small], min_pixel_diff=1)
    _, r_sum = xrai_regions(attr, [big, small], min_pixel_diff=1, region_score="sum")
    assert r_mean[0, 9] == 1 and r_sum[0, 0] == 1


def test_masks_shapes_and_errors(rng):
    img = smooth_image(rng, 24)
    masks = felzenszwalb_masks(img)
    assert masks and all(m.shape == (24, 24) and m.dtype == bool for m in masks)
    with pytest.raises(ValueError, match="algorithm must be one of"):
        tpa.xrai(None, img[None], 0, base_attribution=img[None], algorithm="greedy")
    with pytest.raises(ValueError, match="base_attribution has shape"):
        tpa.xrai(None, img[None], 0, base_attribution=np.zeros((1, 5, 5)))
    with pytest.raises(ValueError, match="inputs must be one array"):
        tpa.xrai(None, np.zeros((2, 5), np.float32), 0, base_attribution=np.zeros((2, 5)))


def test_channels_first_images_follow_data_format(rng):
    # issue 9 defect 6: segmentation and the channel reduction use the image's own layout
    img = np.stack([smooth_image(rng, 24), smooth_image(rng, 24)])  # [2, 24, 24, 3]
    base = rng.normal(size=img.shape).astype(np.float32)
    ref = tpa.xrai(None, img, 0, base_attribution=base).numpy()
    img_cf, base_cf = np.transpose(img, (0, 3, 1, 2)), np.transpose(base, (0, 3, 1, 2))
    got = tpa.xrai(None, img_cf, 0, base_attribution=base_cf, data_format="channels_first").numpy()
    np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="data_format must be one of"):
        tpa.xrai(None, img, 0, base_attribution=base, data_format="NCHW")
