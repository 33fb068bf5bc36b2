"""Metrics against hand-computed cases and independent computations (scipy / skimage)."""

import numpy as np
import pytest
from deltamtl.model.training import metrics as M

pytestmark = pytest.mark.data  # make test-data


# ---------------------------------------------------------------------------- semseg
def test_miou_hand_case():
    target = np.array([[0, 0, 1], [1, 2, 255]])
    pred = np.array([[0, 1, 1], [1, 0, 2]])
    iou = M.per_class_iou(pred, target, num_classes=4)
    np.testing.assert_allclose(iou[:3], [1 / 3, 2 / 3, 0.0])
    assert np.isnan(iou[3])  # absent from both: excluded
    assert M.miou(pred, target, 4) == pytest.approx(1 / 3)


def test_miou_matches_independent_confusion():
    rng = np.random.default_rng(0)
    k = 6
    t = rng.integers(0, k, (4, 20, 30))
    t[rng.uniform(size=t.shape) < 0.1] = 255
    p = np.where(rng.uniform(size=t.shape) < 0.6, t, rng.integers(0, k, t.shape))
    p[p == 255] = 0
    valid = t != 255
    cm, _, _ = np.histogram2d(t[valid], p[valid], bins=[np.arange(k + 1)] * 2)
    tp = np.diag(cm)
    iou = tp / (cm.sum(0) + cm.sum(1) - tp)
    assert M.miou(p, t, k) == pytest.approx(iou.mean())
    # streaming over batches == function over everything
    m = M.make_meter("semseg", num_classes=k)
    for i in range(4):
        m.update(p[i : i + 1], t[i : i + 1])
    r = m.compute()
    assert r["mIoU"] == pytest.approx(iou.mean())
    assert r["pixel_acc"] == pytest.approx(tp.sum() / cm.sum())
    np.testing.assert_allclose([r[f"IoU/{c}"] for c in range(k)], iou)


def test_miou_out_of_range_prediction_is_wrong():
    t = np.array([[0, 1]])
    assert M.miou(np.array([[0, 7]]), t, 2) == pytest.approx(0.5)  # class 1: 0/1; class 0: 1/1
    assert M.miou(t, t, 2) == 1.0


def test_semseg_shape_mismatch():
    with pytest.raises(ValueError, match="shape"):
        M.make_meter("semseg", 3).update(np.zeros((2, 3)), np.zeros((3, 2)))


# ---------------------------------------------------------------------------- depth
def test_depth_rmse_hand_case():
    t = np.array([[1000.0, 0.0], [2000.0, 3000.0]])
    p = np.array([[1100.0, 5.0], [1800.0, 3000.0]])
    assert M.depth_rmse(p, t) == pytest.approx(np.sqrt((100**2 + 200**2) / 3))
    m = M.make_meter("depth")
    m.update(p[None], t[None])
    r = m.compute()
    assert r["rmse_mm"] == pytest.approx(np.sqrt(50000 / 3))
    assert r["mae_mm"] == pytest.approx(100.0)
    assert r["abs_rel"] == pytest.approx((0.1 + 0.1 + 0) / 3)


def test_depth_meter_pools_pixels():
    rng = np.random.default_rng(1)
    t = rng.uniform(500, 5000, (3, 8, 8))
    t[0, :4] = 0
    p = t + rng.normal(0, 100, t.shape)
    m = M.DepthMeter()
    for i in range(3):
        m.update(p[i], t[i])
    assert m.compute()["rmse_mm"] == pytest.approx(M.depth_rmse(p, t))
    v = t > 0
    assert M.depth_rmse(p, t) == pytest.approx(np.sqrt(np.mean((p[v] - t[v]) ** 2)))


# ---------------------------------------------------------------------------- normals
def test_normal_angle_against_scipy():
    from scipy.spatial.distance import cosine
    from scipy.spatial.transform import Rotation

    rng = np.random.default_rng(2)
    t = rng.normal(size=(50, 3))
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    angles = rng.uniform(0, 170, 50)
    axes = np.cross(t, rng.normal(size=(50, 3)))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    p = Rotation.from_rotvec(axes * np.deg2rad(angles)[:, None]).apply(t)
    p *= rng.uniform(0.2, 3.0, (50, 1))  # unnormalised predictions
    got = M.normal_angles_deg(p.reshape(5, 10, 3), t.reshape(5, 10, 3))
    np.testing.assert_allclose(got, angles, atol=1e-6)
    ref = [np.degrees(np.arccos(np.clip(1 - cosine(a, b), -1, 1))) for a, b in zip(p, t, strict=True)]
    np.testing.assert_allclose(got, ref, atol=1e-6)
    assert M.normal_mean_angle_error(p[None, None], t[None, None]) == pytest.approx(angles.mean())


def test_normals_invalid_and_zero_pred():
    t = np.array([[[0, 0, -1.0], [0, 0, 0]]])
    p = np.array([[[0, 0, 0.0], [1, 0, 0]]])
    assert M.normal_mean_angle_error(p, t) == pytest.approx(90.0)  # zero pred: 90 deg; 2nd invalid
    m = M.make_meter("normals")
    m.update(np.array([[[0, 0, -2.0], [0, 1, 0]]]), np.array([[[0, 0, -1.0], [0, 0, -1]]]))
    r = m.compute()
    assert r["mErr_deg"] == pytest.approx(45.0)
    assert r["within_11.25"] == 0.5 and r["within_30"] == 0.5
    assert r["rmse_deg"] == pytest.approx(np.sqrt(90**2 / 2))


# ---------------------------------------------------------------------------- edges
def _square(h=32, w=32, off=0):
    e = np.zeros((h, w), np.uint8)
    e[8 + off, 8:24] = 1
    e[23 + off, 8:24] = 1
    e[8 + off : 24 + off, 8] = 1
    e[8 + off : 24 + off, 23] = 1
    return e


def test_thin_equals_skimage():
    from scipy.ndimage import binary_dilation
    from skimage.morphology import thin

    rng = np.random.default_rng(3)
    maps = []
    for i in range(30):
        b = rng.uniform(size=(24, 31)) < rng.uniform(0.05, 0.9)
        if i % 2:
            b = binary_dilation(b, iterations=2)
        maps.append(b)
        np.testing.assert_array_equal(M.thin_edges(b), thin(b))
    np.testing.assert_array_equal(M.thin_edges(np.stack(maps)), np.stack([thin(b) for b in maps]))


def test_edge_odsf_trivial_perfect_shifted():
    g = _square()[None]
    assert M.edge_odsf(g.astype(float), g) == pytest.approx(1.0)
    assert M.edge_odsf(np.zeros_like(g, float), g) == 0.0
    one = np.roll(g, 1, axis=1).astype(float)  # 1 px shift
    assert M.edge_odsf(one, g, tolerance_px=1.0) == pytest.approx(1.0)
    three = np.roll(g, 3, axis=2).astype(float)
    f3 = M.edge_odsf(three, g, tolerance_px=1.0)
    # a horizontal shift by 3: the horizontal sides still overlap, the vertical ones are 3 px away
    assert 0.3 < f3 < 0.9
    assert M.edge_odsf(three, g, tolerance_px=3.0) == pytest.approx(1.0)
    far = np.roll(np.roll(g, 6, axis=1), 6, axis=2).astype(float)  # only crossings coincide
    assert M.edge_odsf(far, g, tolerance_px=1.0) < 0.2


def test_edge_one_to_one_matching():
    g = np.zeros((1, 20, 20), np.uint8)
    g[0, 10, 2:18] = 1
    double = g.copy()
    double[0, 11, 2:18] = 1  # a 2-pixel-thick prediction, not thinned
    # bipartite: half the predicted pixels have no partner left -> P = 0.5, R = 1
    f = M.edge_odsf(double.astype(float), g, tolerance_px=1.0, thin=False)
    assert f == pytest.approx(2 * 0.5 / 1.5)
    # the distance-transform approximation matches both rows
    assert M.edge_odsf(double.astype(float), g, tolerance_px=1.0, thin=False, method="distance") == 1.0
    # thinning the prediction restores a one-pixel line (thinning shortens its ends by a pixel)
    assert M.edge_odsf(double.astype(float), g, tolerance_px=1.0) > 0.95


def test_matching_against_linear_sum_assignment():
    from scipy.optimize import linear_sum_assignment

    rng = np.random.default_rng(4)
    for _ in range(10):
        a = rng.uniform(size=(12, 12)) < 0.15
        b = rng.uniform(size=(12, 12)) < 0.15
        tol = float(rng.choice([1.0, 1.5, 2.0]))
        pa, pb = np.argwhere(a), np.argwhere(b)
        if len(pa) == 0 or len(pb) == 0:
            continue
        dist = np.linalg.norm(pa[:, None] - pb[None], axis=2)
        cost = (dist > tol + 1e-9).astype(float)
        r, c = linear_sum_assignment(cost)
        expected = int(np.sum(cost[r, c] == 0))
        assert M.match_edges(a, b, tol) == (expected, expected)
        cnt = M.edge_counts(a[None].astype(float), b[None].astype(np.uint8), tol, thresholds=[0.5],
                            thin=False)
        assert cnt["cnt_p"][0, 0] == expected


def test_ods_pools_counts_over_images():
    g = np.stack([_square(), _square()])
    p = np.zeros(g.shape)
    p[0] = g[0] * 0.9  # image 0: perfect at th <= 0.9
    p[1][g[1] == 1] = 0.4  # image 1: perfect only at th <= 0.4, plus clutter at 0.6
    p[1][2, 2:30] = 0.6
    m = M.EdgeMeter(tolerance_px=1.0, thresholds=[0.3, 0.5, 0.7], thin=False)
    m.update(p, g)
    r = m.compute()
    n = g[0].sum()
    # th 0.3: all gt matched, 28 clutter pixels -> P = 2n / (2n + 28), R = 1
    f03 = 2 * (2 * n / (2 * n + 28)) / (2 * n / (2 * n + 28) + 1)
    # th 0.5: image0 perfect, image1 only clutter -> P = n / (n + 28), R = 0.5
    P5 = n / (n + 28)
    f05 = 2 * P5 * 0.5 / (P5 + 0.5)
    assert r["odsF"] == pytest.approx(max(f03, f05))
    # OIS: image 0 best F = 1, image 1 best F at th 0.3: P = n / (n + 28), R = 1
    P1 = n / (n + 28)
    assert r["oisF"] == pytest.approx((1 + 2 * P1 / (P1 + 1)) / 2)
    # streaming one image at a time gives the same
    m2 = M.make_meter("edges", tolerance_px=1.0, thresholds=[0.3, 0.5, 0.7], thin=False)
    m2.update(p[0], g[0])
    m2.update(p[1], g[1])
    assert m2.compute()["odsF"] == pytest.approx(r["odsF"])


def test_edge_default_tolerance_and_errors():
    assert M.default_edge_tolerance(64, 64) == 1.0
    assert M.default_edge_tolerance(416, 416) == pytest.approx(0.011 * np.hypot(416, 416))
    with pytest.raises(ValueError, match="binary"):
        M.edge_odsf(np.zeros((1, 4, 4)), np.full((1, 4, 4), 2))


def test_edges_on_rendered_clip():
    from deltamtl.model.data import render_clip

    c = render_clip(5, 2, 48, 48)
    assert M.edge_odsf(c.edges.astype(float), c.edges) == pytest.approx(1.0)
    # a blurred probability map still scores high but below perfect
    from scipy.ndimage import gaussian_filter

    prob = np.stack([gaussian_filter(e.astype(float), 1.0) for e in c.edges])
    prob /= prob.max()
    assert 0.6 < M.edge_odsf(prob, c.edges) <= 1.0


# ---------------------------------------------------------------------------- saliency
def test_saliency_maxf_hand_case():
    p = np.array([[0.9, 0.6, 0.4, 0.1]])
    t = np.array([[1, 0, 1, 0]])
    assert M.saliency_maxf(p, t, thresholds=[0.5]) == pytest.approx(0.5)
    # over a fine grid the best threshold keeps only the 0.9 pixel: P = 1, R = 0.5
    assert M.saliency_maxf(p, t) == pytest.approx(1.3 * 0.5 / (0.3 + 0.5))
    m = M.make_meter("sal")
    m.update(p, t)
    assert m.compute()["maxF"] == pytest.approx(0.8125)


def test_saliency_against_bruteforce_and_ignore():
    rng = np.random.default_rng(5)
    p = rng.uniform(size=(3, 10, 10))
    t = (rng.uniform(size=p.shape) < 0.3).astype(np.uint8)
    t[0, 0] = 255
    th = np.linspace(0.05, 0.95, 19)
    v = t != 255
    best = 0.0
    for x in th:
        pb = p[v] >= x
        tb = t[v] == 1
        tp = np.sum(pb & tb)
        if pb.sum() == 0 or tp == 0:
            continue
        P, R = tp / pb.sum(), tp / tb.sum()
        best = max(best, 1.3 * P * R / (0.3 * P + R))
    assert M.saliency_maxf(p, t, thresholds=th) == pytest.approx(best)


# ---------------------------------------------------------------------------- meters
@pytest.mark.parametrize("task", ["semseg", "depth", "normals", "edges", "sal", "human_parts"])
def test_make_meter_primary_keys(task):
    rng = np.random.default_rng(6)
    m = M.make_meter(task, num_classes=5 if task == "semseg" else None)
    if task in ("semseg", "human_parts"):
        m.update(rng.integers(0, 5, (2, 8, 8)), rng.integers(0, 5, (2, 8, 8)))
    elif task == "depth":
        m.update(rng.uniform(1, 2, (2, 8, 8)), rng.uniform(1, 2, (2, 8, 8)))
    elif task == "normals":
        m.update(rng.normal(size=(2, 8, 8, 3)), rng.normal(size=(2, 8, 8, 3)))
    else:
        m.update(rng.uniform(size=(2, 8, 8)), (rng.uniform(size=(2, 8, 8)) < 0.2).astype(np.uint8))
    key, higher = M.PRIMARY_METRIC[task]
    out = m.compute()
    assert key in out and np.isfinite(out[key])
    assert isinstance(higher, bool)


def test_make_meter_errors():
    with pytest.raises(ValueError):
        M.make_meter("semseg")
    with pytest.raises(ValueError):
        M.make_meter("nope")


def test_torch_inputs_accepted():
    torch = pytest.importorskip("torch")
    t = torch.tensor([[0, 1], [1, 1]])
    assert M.miou(t, t, 2) == 1.0
